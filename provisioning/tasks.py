"""Celery tasks of the data plane. Thin: they take ids and call the engine.

The canvas (provisioning.engine.canvas) chains them: `provisioning.run_phase` for each phase
of a job's plan, `provisioning.compensate_phase` for each phase of its rollback. A delivery
that must not go on (its job is not RUNNING, its phase is held elsewhere, a step failed)
ends its chain by dropping the rest of it from its request: the database, not the broker,
says what runs next. One that goes on sends the next link itself, as a prepared message
(provisioning.engine.canvas.send_next_link: the message Celery's tracer would send after the
task returns, without its cost), and drops the rest from its request as sent. Worker settings for no lost work are in matih/settings.py: acks_late,
reject_on_worker_lost, prefetch 1, time limits, one visibility timeout.
"""
from __future__ import annotations

from celery import shared_task

from provisioning import notifications
from provisioning.engine import canvas, rollback, runner, sweeper


def _go_on_or_stop(task, result) -> str:
    if not result.go_on:
        task.request.chain = None  # the rest of the chain is not sent (celery.app.trace)
    elif task.request.chain and canvas.send_next_link(task.request):
        task.request.chain = None  # sent as the tracer would have sent it (canvas.send_next_link)
    return result.outcome


@shared_task(name="provisioning.run_phase", bind=True)
def run_phase(self, job_id: str, phase: str) -> str:
    return _go_on_or_stop(self, runner.run_phase(job_id, phase))


@shared_task(name="provisioning.compensate_phase", bind=True)
def compensate_phase(self, job_id: str, phase: str) -> str:
    return _go_on_or_stop(self, rollback.compensate_phase(job_id, phase))


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
