"""The sweeper's PeriodicTask, run by django-celery-beat's DatabaseScheduler."""
from __future__ import annotations

from django.conf import settings

SWEEP_TASK_NAME = "provisioning: sweep due, stalled and undispatched jobs"
SWEEP_TASK = "provisioning.sweep"


def ensure_sweep_periodic_task(IntervalSchedule, PeriodicTask, PeriodicTasks=None) -> None:
    schedule, _ = IntervalSchedule.objects.get_or_create(every=settings.MATIH_SWEEP_INTERVAL, period="seconds")
    PeriodicTask.objects.update_or_create(
        name=SWEEP_TASK_NAME,
        defaults={"task": SWEEP_TASK, "interval": schedule, "enabled": True,
                  "description": "Resumes RETRY_SCHEDULED jobs that are due, RUNNING jobs whose lease "
                                 "expired and PENDING jobs never dispatched (MATIH_SWEEP_INTERVAL)."},
    )
    if PeriodicTasks is not None:
        # A running beat notices a changed schedule only through this row.
        from django.utils import timezone

        PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})
