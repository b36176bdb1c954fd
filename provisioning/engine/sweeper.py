"""The sweeper: finds the jobs nothing is driving and drives them again.

Run by celery beat every MATIH_SWEEP_INTERVAL seconds (provisioning.sweep) and
by `python manage.py sweep`. Three kinds of job need it:

- RETRY_SCHEDULED whose nextRetryAt has passed: resumed from the failed step;
- RUNNING, ROLLING_BACK or CANCELLING whose lease lapsed: a worker died or a
  message was lost (Redis wiped); steps whose lease lapsed go back to PENDING;
- PENDING never dispatched (the broker was down at registration).

Rows are claimed with SELECT ... FOR UPDATE SKIP LOCKED and their lease pushed
forward in the same transaction, so two sweepers never resume one job twice.
The messages go out after the commit.
"""
from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from provisioning.models import JobStatus, ProvisioningEvent, ProvisioningJob, StepRun, WebhookDelivery
from provisioning.engine.runner import ready_steps
from provisioning.engine.plans import plan_for
from provisioning.live.publish import publish_change
from tenants.services import purge_idempotency_records

log = logging.getLogger("matih.sweeper")

S = JobStatus
JOB = ProvisioningJob._meta.db_table
STEP = StepRun._meta.db_table
BATCH = 1000


@dataclass
class SweepReport:
    retried: list[str] = field(default_factory=list)
    stalled: list[str] = field(default_factory=list)
    rolling_back: list[str] = field(default_factory=list)
    undispatched: list[str] = field(default_factory=list)
    webhooks: int = 0
    idempotency_purged: int = 0
    claim_ms: float = 0.0
    dispatch_ms: float = 0.0

    @property
    def total(self) -> int:
        return len(self.retried) + len(self.stalled) + len(self.rolling_back) + len(self.undispatched)


def _claim(cursor, sql: str, params: list) -> list:
    cursor.execute(sql + " FOR UPDATE SKIP LOCKED", params)
    return [row[0] for row in cursor.fetchall()]


def _bump(cursor, ids: list, extra_sql: str, params: list, kind: str, message: str) -> dict:
    """Push the jobs' lease forward, bump their versions and record one event each."""
    if not ids:
        return {}
    cursor.execute(
        f"UPDATE {JOB} SET {extra_sql}, version = version + 1, updated_at = now() "
        f"WHERE id = ANY(%s) RETURNING id, version, tenant_id, status",
        params + [ids],
    )
    rows = cursor.fetchall()
    ProvisioningEvent.objects.bulk_create(
        [ProvisioningEvent(job_id=job_id, seq=version, kind=kind, message=message) for job_id, version, _, _ in rows]
    )
    return {job_id: (version, tenant_id, status) for job_id, version, tenant_id, status in rows}


def sweep(*, now=None, batch: int = BATCH) -> SweepReport:
    """One pass; see the module's docstring."""
    from provisioning.engine.runner import complete_job, current_phase, send_compensation, send_steps
    from provisioning.tasks import start_job as start_job_task

    now = now or timezone.now()
    lease = now + timedelta(seconds=settings.MATIH_STEP_LEASE)
    grace = now - timedelta(seconds=max(settings.MATIH_SWEEP_INTERVAL, 5))
    report = SweepReport()
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        retry_ids = _claim(cursor, f"SELECT id FROM {JOB} WHERE status = 'RETRY_SCHEDULED' AND next_retry_at <= %s "
                                   f"ORDER BY next_retry_at LIMIT %s", [now, batch])
        stalled_ids = _claim(cursor, f"SELECT id FROM {JOB} WHERE status IN ('RUNNING', 'ROLLING_BACK', 'CANCELLING') "
                                     f"AND lease_expires_at < %s ORDER BY lease_expires_at LIMIT %s", [now, batch])
        pending_ids = _claim(cursor, f"SELECT id FROM {JOB} WHERE status = 'PENDING' AND created_at < %s "
                                     f"AND (dispatched_at IS NULL OR dispatched_at < %s) "
                                     f"ORDER BY created_at LIMIT %s", [grace, grace, batch])
        # Steps to run again: the failed ones of retried jobs, the lapsed ones of stalled jobs.
        # SKIP LOCKED: a step a worker is claiming right now is left to that worker.
        if retry_ids or stalled_ids:
            cursor.execute(
                f"SELECT id FROM {STEP} WHERE (job_id = ANY(%s) AND status = 'FAILED') "
                f"OR (job_id = ANY(%s) AND status = 'RUNNING' AND lease_expires_at < %s) FOR UPDATE SKIP LOCKED",
                [retry_ids, stalled_ids, now],
            )
            step_ids = [row[0] for row in cursor.fetchall()]
            if step_ids:
                cursor.execute(f"UPDATE {STEP} SET status = 'PENDING', lease_expires_at = NULL, claimed_by = '' "
                               f"WHERE id = ANY(%s)", [step_ids])
        retried = _bump(cursor, retry_ids, "status = 'RUNNING', next_retry_at = NULL, lease_expires_at = %s",
                        [lease], "job.resumed", "Resumed from the failed step after the backoff.")
        stalled = _bump(cursor, stalled_ids, "lease_expires_at = %s", [lease], "job.recovered",
                        "Resumed by the sweeper: its lease lapsed (a worker died or a message was lost).")
        pending = _bump(cursor, pending_ids, "dispatched_at = %s", [now], "job.dispatched",
                        "Dispatched by the sweeper: it was never started.")
        to_run = [job_id for job_id, (_, _, status) in {**retried, **stalled}.items() if status == S.RUNNING]
        statuses: dict = defaultdict(dict)
        tiers: dict = {}
        if to_run:
            cursor.execute(f"SELECT s.job_id, s.name, s.status, j.tier FROM {STEP} s JOIN {JOB} j ON j.id = s.job_id "
                           f"WHERE s.job_id = ANY(%s)", [to_run])
            for job_id, name, status, tier in cursor.fetchall():
                statuses[job_id][name] = status
                tiers[job_id] = tier
    report.claim_ms = (time.perf_counter() - started) * 1000

    started = time.perf_counter()
    for job_id, (version, tenant_id, status) in {**retried, **stalled}.items():
        if status == S.RUNNING:
            plan = plan_for(tiers[job_id]) if job_id in tiers else None
            if plan is not None and current_phase(plan, statuses[job_id]) == "COMPLETED":
                complete_job(job_id)  # its last step committed, then its worker died
            elif plan is not None:
                send_steps(job_id, ready_steps(plan, statuses[job_id]))
            else:
                start_job_task.delay(str(job_id))  # RUNNING without steps: died inside start
            (report.retried if job_id in retried else report.stalled).append(str(job_id))
        else:
            send_compensation(job_id)
            report.rolling_back.append(str(job_id))
        publish_change(tenant_id=tenant_id, job_id=job_id, version=version, status=status)
    for job_id in pending:
        start_job_task.delay(str(job_id))
        report.undispatched.append(str(job_id))
    report.webhooks = resend_overdue_webhooks(before=grace)
    report.idempotency_purged = purge_idempotency_records(now=now)
    report.dispatch_ms = (time.perf_counter() - started) * 1000
    if report.total:
        log.info("sweep resumed %d job(s)", report.total, extra={
            "retried": len(report.retried), "stalled": len(report.stalled),
            "rollingBack": len(report.rolling_back), "undispatched": len(report.undispatched),
            "claimMs": round(report.claim_ms, 2), "dispatchMs": round(report.dispatch_ms, 2)})
    return report


def resend_overdue_webhooks(*, before) -> int:
    """Deliveries whose retry is overdue by a sweep interval lost their message: send again."""
    from provisioning.tasks import deliver_webhook

    with transaction.atomic():
        overdue = list(
            WebhookDelivery.objects.select_for_update(skip_locked=True)
            .filter(status__in=[WebhookDelivery.Status.PENDING, WebhookDelivery.Status.RETRYING],
                    next_attempt_at__lt=before)
            .values_list("id", flat=True)[:BATCH]
        )
        WebhookDelivery.objects.filter(id__in=overdue).update(next_attempt_at=timezone.now())
    for delivery_id in overdue:
        deliver_webhook.delay(delivery_id)
    return len(overdue)
