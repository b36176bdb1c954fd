"""The sweeper: finds the jobs nothing is driving and drives them again.

Run by celery beat every MATIH_SWEEP_INTERVAL seconds (provisioning.sweep) and by
`python manage.py sweep`. Three kinds of job need it:

- RETRY_SCHEDULED whose nextRetryAt has passed: resumed from the failed step;
- RUNNING, ROLLING_BACK or CANCELLING whose lease lapsed: a worker died or a message was
  lost (Redis wiped); the canvas is sent again from the first unfinished phase (a step whose
  lease lapsed is taken over by the phase that claims it), or the rollback canvas;
- PENDING never dispatched (the broker was down at commit).

It also starts the DEPROVISION of each tenant whose deletion grace period has passed.

Rows are claimed with SELECT ... FOR UPDATE SKIP LOCKED and their lease pushed forward in
the same transaction (provisioning.engine.resume), so two sweepers never resume one job
twice. The canvases go out after the commit.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from provisioning.engine import resume as R
from provisioning.engine.states import JOB_TABLE, LEASED, S, sql_status_in
from provisioning.models import WebhookDelivery
from tenants.services import purge_idempotency_records

log = logging.getLogger("matih.sweeper")

BATCH = 1000


@dataclass
class SweepReport:
    retried: list[str] = field(default_factory=list)
    stalled: list[str] = field(default_factory=list)
    rolling_back: list[str] = field(default_factory=list)
    undispatched: list[str] = field(default_factory=list)
    deprovisioning: list[str] = field(default_factory=list)
    webhooks: int = 0
    idempotency_purged: int = 0
    claim_ms: float = 0.0
    dispatch_ms: float = 0.0

    @property
    def total(self) -> int:
        return (len(self.retried) + len(self.stalled) + len(self.rolling_back) + len(self.undispatched)
                + len(self.deprovisioning))


def _claim(cursor, where: str, order: str, params: dict) -> list:
    cursor.execute(f"SELECT id FROM {JOB_TABLE} WHERE {where} ORDER BY {order} LIMIT %(batch)s "
                   f"FOR UPDATE SKIP LOCKED", params)
    return [row[0] for row in cursor.fetchall()]


def sweep(*, now=None, batch: int = BATCH) -> SweepReport:
    """One pass; see the module's docstring."""
    now = now or timezone.now()
    lease = now + timedelta(seconds=settings.MATIH_STEP_LEASE)
    grace = now - timedelta(seconds=max(settings.MATIH_SWEEP_INTERVAL, 5))
    params = {"now": now, "grace": grace, "batch": batch}
    report = SweepReport()
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        retry_ids = _claim(cursor, f"{sql_status_in([S.RETRY_SCHEDULED])} AND next_retry_at <= %(now)s",
                           "next_retry_at", params)
        stalled_ids = _claim(cursor, f"{sql_status_in(LEASED)} AND lease_expires_at < %(now)s",
                             "lease_expires_at", params)
        pending_ids = _claim(cursor, f"{sql_status_in([S.PENDING])} AND created_at < %(grace)s "
                                     f"AND (dispatched_at IS NULL OR dispatched_at < %(grace)s)", "created_at", params)
        retried = R.resume(cursor, retry_ids, transitions=[R.RETRY_DUE], lease=lease, event="job.resumed",
                           message="Resumed from the failed step after the backoff.", reset_failed_steps=True,
                           extra_set=", next_retry_at = NULL")
        stalled = R.resume(cursor, stalled_ids,
                           transitions=[R.STILL_RUNNING, R.STILL_ROLLING_BACK, R.STILL_CANCELLING], lease=lease,
                           event="job.recovered", reset_failed_steps=False,
                           message="Resumed by the sweeper: its lease lapsed (a worker died or a message was lost).")
        pending = R.redispatch(cursor, pending_ids, now=now, event="job.dispatched",
                               message="Dispatched by the sweeper: it was never started.")
    report.claim_ms = (time.perf_counter() - started) * 1000

    started = time.perf_counter()
    R.send(retried + stalled + pending)
    report.retried = [job.job_id for job in retried]
    report.stalled = [job.job_id for job in stalled if job.status == S.RUNNING]
    report.rolling_back = [job.job_id for job in stalled if job.status != S.RUNNING]
    report.undispatched = [job.job_id for job in pending]
    report.deprovisioning = start_due_deletions(now=now)
    report.webhooks = resend_overdue_webhooks(before=grace)
    report.idempotency_purged = purge_idempotency_records(now=now)
    report.dispatch_ms = (time.perf_counter() - started) * 1000
    if report.total:
        log.info("sweep resumed %d job(s)", report.total, extra={
            "retried": len(report.retried), "stalled": len(report.stalled),
            "rollingBack": len(report.rolling_back), "undispatched": len(report.undispatched),
            "deprovisioning": len(report.deprovisioning), "claimMs": round(report.claim_ms, 2), "dispatchMs": round(report.dispatch_ms, 2)})
    return report


def start_due_deletions(*, now) -> list[str]:
    """The DEPROVISION job of each tenant whose grace period has passed (one transaction each)."""
    from provisioning.lifecycle import deletions_due, start_deprovision

    started = []
    for tenant in deletions_due(now=now):
        job = start_deprovision(tenant=tenant, now=now)
        if job is not None:
            started.append(str(job.id))
    return started


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
