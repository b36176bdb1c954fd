"""Celery tasks of the data plane. Thin: they take ids and call the orchestrator.

Worker settings for no lost work are in matih/settings.py: acks_late,
reject_on_worker_lost, prefetch 1, time limits, one visibility timeout.
"""
from __future__ import annotations

from celery import shared_task

from provisioning import notifications
from provisioning.engine import runner as orchestrator, sweeper


@shared_task(name="provisioning.start_job")
def start_job(job_id: str, tier: str | None = None) -> bool:
    return orchestrator.start_job(job_id, tier)


@shared_task(name="provisioning.run_step")
def run_step(job_id: str, step: str) -> str:
    return orchestrator.run_step(job_id, step)


@shared_task(name="provisioning.compensate")
def compensate(job_id: str) -> str:
    return orchestrator.compensate_next(job_id)


@shared_task(name="provisioning.sweep")
def sweep() -> dict:
    report = sweeper.sweep()
    return {"retried": len(report.retried), "stalled": len(report.stalled),
            "rollingBack": len(report.rolling_back), "undispatched": len(report.undispatched)}


@shared_task(name="provisioning.notify_job_finished")
def notify_job_finished(job_id: str) -> None:
    notifications.notify_job_finished(job_id)


@shared_task(name="provisioning.deliver_webhook", bind=True, max_retries=None)
def deliver_webhook(self, delivery_id: int) -> str:
    outcome = notifications.deliver_webhook(delivery_id)
    if outcome.retry_in is not None:
        raise self.retry(countdown=outcome.retry_in)
    return outcome.status
