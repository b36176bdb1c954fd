"""Rollback and cancel: the compensations of what a job did, latest phase first.

The rollback canvas is `chain(compensate_phase(job, pK), ..., compensate_phase(job, p1))`
from the latest phase with something to undo down to the first, built by `send_job_rollback`
from the steps' statuses (it is what the runner, the cancel and roll-back services and the
sweeper send); a phase with nothing to undo passes at once.
Each `compensate_phase` delivery:

1. ends its chain while a step of the job still runs (the running step finishes, cancel never
   interrupts one; the runner sends the rollback when its phase's steps are done), or while a
   compensation is held elsewhere or waits for its retry;
2. marks a step whose worker died mid-run FAILED (whatever it did is undone);
3. undoes its phase's steps in reverse plan order, each claimed by compare-and-swap and run
   under a lease: a transient failure is retried after the backoff (the delivery ends its
   chain and a new rollback canvas from this phase is sent with that countdown; the lease
   brings the sweeper if the message is lost), a spent budget marks it COMPENSATION_FAILED
   and the rollback goes on;
4. when nothing is left to undo in the whole job: ROLLING_BACK -> FAILED or
   CANCELLING -> CANCELLED, and the plan's outcome says what the tenant becomes.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from deploy.backend import backend_for
from deploy.errors import InfraError, TransientInfraError
from provisioning.engine import heartbeat, inventory
from provisioning.engine.canvas import send_rollback
from provisioning.engine.outcomes import outcome_of
from provisioning.engine.plans import Plan, plan_of_job
from provisioning.engine.runner import Result, claim_token, notify
from provisioning.engine.states import backoff_seconds, lease_until, record, simulated_time_scale, transition
from provisioning.engine.steps import IMPLEMENTATIONS, StepContext
from provisioning.live.publish import publish_change
from provisioning.models import JobStatus, ProvisioningJob, StepRun, StepStatus

log = logging.getLogger("matih.engine")

S = JobStatus
UNWINDING = (S.ROLLING_BACK, S.CANCELLING)
LIVE_STEP_STATUSES = (StepStatus.RUNNING, StepStatus.COMPENSATING)


def _undoable(step_run: StepRun, now) -> bool:
    """Something this step did may still be in place, and it has a compensation."""
    implementation = IMPLEMENTATIONS.get(step_run.name)
    if implementation is None or implementation.compensate is None:
        return False
    if step_run.status == StepStatus.SUCCEEDED:
        return True
    if step_run.status == StepStatus.FAILED:
        return step_run.attempts > 0  # it ran, and may have made part of what it makes
    if step_run.status == StepStatus.COMPENSATING:
        return True
    if step_run.status == StepStatus.RUNNING:
        return step_run.lease_expires_at is not None and step_run.lease_expires_at <= now  # its worker died
    return False


def phases_to_undo(plan: Plan, steps: list[StepRun], now=None) -> list[str]:
    """The phases with something to undo, latest first."""
    now = now or timezone.now()
    phases = {s.phase for s in steps if _undoable(s, now)}
    return [phase for phase in reversed(plan.phases) if phase in phases]


def rollback_phases(plan: Plan, latest: str | None) -> list[str]:
    """The rollback chain's phases: from `latest` down to the plan's first (just the first: nothing to undo)."""
    end = plan.phases.index(latest) if latest else 0
    return list(reversed(plan.phases[:end + 1]))


def send_job_rollback(job_id, countdown: float | None = None, from_phase: str | None = None) -> None:
    """Send the rollback canvas of what the job still has to undo (when nothing, the first phase's
    compensate_phase finishes the job)."""
    job = ProvisioningJob.objects.filter(id=job_id).only("id", "kind", "tier", "from_tier").first()
    if job is None:
        return
    plan = plan_of_job(job)
    left = phases_to_undo(plan, list(StepRun.objects.filter(job_id=job_id)))
    send_rollback(job_id, rollback_phases(plan, from_phase or (left[0] if left else None)), countdown=countdown)


@dataclass
class Unwinding:
    job: ProvisioningJob
    plan: Plan
    steps: list[StepRun]


def compensate_phase(job_id, phase: str) -> Result:
    """Undo one phase of a job being rolled back or cancelled; see the module's docstring."""
    now = timezone.now()
    job = ProvisioningJob.objects.select_related("tenant", "tenant__settings").filter(id=job_id).first()
    if job is None or job.status not in UNWINDING:
        return Result("not-rolling-back", go_on=False)
    plan = plan_of_job(job)
    steps = list(StepRun.objects.filter(job_id=job_id).order_by("-position"))
    if any(s.status in LIVE_STEP_STATUSES and s.lease_expires_at and s.lease_expires_at > now for s in steps):
        return Result("waiting", go_on=False)  # a step still runs, or a compensation is held or waits
    for step_run in steps:
        if step_run.status == StepStatus.RUNNING:
            # Its worker died mid-step: whatever it did is undone below.
            ran_ms = int((now - step_run.started_at).total_seconds() * 1000) if step_run.started_at else 0
            StepRun.objects.filter(id=step_run.id, status=StepStatus.RUNNING).update(
                status=StepStatus.FAILED, error="The worker running this step stopped.", finished_at=now,
                elapsed_ms=F("elapsed_ms") + max(ran_ms, 0))
            step_run.status = StepStatus.FAILED
    for step_run in [s for s in steps if s.phase == phase]:
        if not _undoable(step_run, now):
            continue
        outcome = _compensate_step(job, plan, step_run)
        if outcome == "retry-later":
            return Result("compensation-retry-scheduled", go_on=False)
        if outcome == "raced":
            return Result("raced", go_on=False)
    left = phases_to_undo(plan, list(StepRun.objects.filter(job_id=job_id)))
    if not left:
        finish_rollback(job)
        return Result("finished", go_on=False)
    if plan.phases.index(left[0]) >= plan.phases.index(phase):
        # Something this chain has passed is still to undo (a compensation that lost a race, a
        # step whose worker died): send what is left anew.
        send_job_rollback(job_id)
        return Result("resent", go_on=False)
    return Result("phase-undone", go_on=True)  # the chain goes down to the first phase


def _compensate_step(job: ProvisioningJob, plan: Plan, step_run: StepRun) -> str:
    now = timezone.now()
    owner = claim_token()
    with transaction.atomic():
        claimed = StepRun.objects.filter(id=step_run.id, status=step_run.status,
                                         lease_expires_at=step_run.lease_expires_at).update(
            status=StepStatus.COMPENSATING, compensation_attempts=F("compensation_attempts") + 1,
            claimed_by=owner, lease_expires_at=lease_until(now),
        )
        if not claimed:
            return "raced"
        result = record(job.id, event="step.compensating", step=step_run.name,
                        message=f"Undoing {step_run.name}.", lease_expires_at=lease_until(now))
        _publish_on_commit(job, result)
    attempts = step_run.compensation_attempts + 1
    ctx = StepContext(job_id=str(job.id), tenant=job.tenant, tenant_settings=_settings_of(job.tenant),
                      job_context=job.context, backend=backend_for(simulate=job.context.get("simulate"), tenant_id=job.tenant_id),
                      plan=plan)
    heartbeat.hold(step_run.id, job.id)
    try:
        undone = IMPLEMENTATIONS[step_run.name].compensate(ctx, step_run.outputs)
    except Exception as exc:
        if not isinstance(exc, InfraError):
            log.exception("compensation of %s (job %s) raised", step_run.name, job.id)
        error = exc if isinstance(exc, InfraError) else TransientInfraError(f"{type(exc).__name__}: {exc}")
        return _compensation_failed(job, step_run, owner, error, attempts)
    finally:
        heartbeat.release(step_run.id)
    with transaction.atomic():
        StepRun.objects.filter(id=step_run.id, claimed_by=owner).update(
            status=StepStatus.COMPENSATED, lease_expires_at=None)
        with connection.cursor() as cursor:
            inventory.record(cursor, tenant_id=job.tenant_id, job_id=job.id, step=step_run.name,
                             outputs=undone if undone is not None else inventory.undone(job.id, step_run.name))
        result = record(job.id, event="step.compensated", step=step_run.name,
                        message=f"{step_run.name} undone.", lease_expires_at=lease_until(now))
        _publish_on_commit(job, result)
    return "compensated"


def _compensation_failed(job: ProvisioningJob, step_run: StepRun, owner: str, error: InfraError,
                         attempts: int) -> str:
    now = timezone.now()
    message = f"Undoing {step_run.name} failed: {error.describe()}"
    with transaction.atomic():
        if error.transient and attempts <= job.max_retries:
            delay = backoff_seconds(attempts - 1, error.retry_after, time_scale=simulated_time_scale(job.context))
            # Left COMPENSATING with its lease at the retry time: the retry (or the sweeper) takes it then.
            StepRun.objects.filter(id=step_run.id, claimed_by=owner).update(
                error=message, lease_expires_at=now + timedelta(seconds=delay))
            result = record(job.id, event="step.compensation_retry", step=step_run.name, message=message,
                            data={"delaySeconds": round(delay, 3)}, lease_expires_at=lease_until(now, delay))
            _publish_on_commit(job, result)
            transaction.on_commit(lambda: send_job_rollback(job.id, countdown=delay + 0.05,
                                                            from_phase=step_run.phase))
            return "retry-later"
        StepRun.objects.filter(id=step_run.id, claimed_by=owner).update(
            status=StepStatus.COMPENSATION_FAILED, error=message, lease_expires_at=None)
        result = record(job.id, event="step.compensation_failed", step=step_run.name, message=message,
                        lease_expires_at=lease_until(now))
        _publish_on_commit(job, result)
    return "compensation-failed"


def finish_rollback(job: ProvisioningJob) -> bool:
    """ROLLING_BACK -> FAILED or CANCELLING -> CANCELLED; the plan's outcome for the tenant."""
    now = timezone.now()
    cancelled = job.status == S.CANCELLING
    final = S.CANCELLED if cancelled else S.FAILED
    leftovers = list(StepRun.objects.filter(job_id=job.id, status=StepStatus.COMPENSATION_FAILED)
                     .values_list("name", flat=True))
    noun = job.get_kind_display().replace("_", " ").capitalize()
    message = job.error_message or f"{noun} failed."
    if cancelled:
        message = f"{noun} was cancelled; everything it did was undone."
    if leftovers:
        message += (f" Could not undo: {', '.join(leftovers)}; remove those resources by hand "
                    f"(see the job's events), then retry.")
    with transaction.atomic():
        version = transition(job.id, from_=[job.status], to=final,
                             event="job.cancelled" if cancelled else "job.failed",
                             message=message, completed_at=now, error_message=message, lease_expires_at=None,
                             next_retry_at=None)
        if version is None:
            return False
        fuller = outcome_of(plan_of_job(job)).failed(job, message, cancelled=cancelled)
        if fuller and fuller != message:
            ProvisioningJob.objects.filter(id=job.id).update(error_message=fuller)
        transaction.on_commit(lambda: publish_change(tenant_id=job.tenant_id, job_id=job.id, version=version,
                                                     status=final))
        transaction.on_commit(lambda: notify(job.id))
    return True


def fail_forward(job_id, plan: Plan, message: str) -> int | None:
    """A forward-only phase spent its budget: FAILED without undoing (inside the caller's transaction)."""
    job = ProvisioningJob.objects.get(id=job_id)
    version = transition(job_id, from_=[S.RUNNING, S.RETRY_SCHEDULED], to=S.FAILED, event="job.failed",
                         message=message, completed_at=timezone.now(), error_message=message,
                         lease_expires_at=None, next_retry_at=None)
    if version is None:
        return None
    job.refresh_from_db()
    fuller = outcome_of(plan).failed(job, message, cancelled=False)
    if fuller and fuller != message:
        ProvisioningJob.objects.filter(id=job_id).update(error_message=fuller)
    transaction.on_commit(lambda: publish_change(tenant_id=job.tenant_id, job_id=job_id, version=version,
                                                 status=S.FAILED))
    transaction.on_commit(lambda: notify(job_id))
    return version


def _settings_of(tenant) -> dict:
    return getattr(getattr(tenant, "settings", None), "values", None) or {}


def _publish_on_commit(job: ProvisioningJob, result) -> None:
    if result is None:
        return
    version, status = result
    transaction.on_commit(lambda: publish_change(tenant_id=job.tenant_id, job_id=job.id, version=version,
                                                 status=status))
