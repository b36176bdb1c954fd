"""The orchestrator: runs a job's plan as Celery tasks, with the database as the truth.

The canvas. Each step is one `provisioning.run_step` task. A task that
finishes its step commits the result and then sends the steps that became
ready: the next step of a chain, every step of a parallel group at once, and a
step that waits for several others only once all of them have succeeded (the
fan-in is read from the database under the job's row lock, not counted in
the result backend, so a lost message or a wiped Redis costs a delay, never
a job). Resuming a job rebuilds the canvas the same way: from the steps that
are not yet done.

The claims. A task claims its StepRun with a compare-and-swap (PENDING ->
RUNNING, or a RUNNING step whose lease lapsed). A duplicate delivery finds the
step claimed or done and does nothing, except make sure the successors of a
done step were sent.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import time
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone
from psycopg.types.json import Jsonb

from deploy.backend import backend_for
from deploy.errors import InfraError, TransientInfraError
from provisioning.engine import heartbeat
from provisioning.models import JobStatus, ProvisioningEvent, ProvisioningJob, StepRun, StepStatus
from provisioning.engine.plans import Plan, plan_for
from provisioning.live.publish import publish_change
from provisioning.engine.spec import namespace_for
from provisioning.engine.states import backoff_seconds, lease_until, record, transition
from provisioning.engine.steps import IMPLEMENTATIONS, StepContext
from tenants.models import DeploymentType, Tenant, TenantStatus

log = logging.getLogger("matih.orchestrator")

S = JobStatus
STEP_TABLE = StepRun._meta.db_table
JOB_TABLE = ProvisioningJob._meta.db_table
EVENT_TABLE = ProvisioningEvent._meta.db_table
ACTIVE_STEP_STATUSES = (StepStatus.RUNNING, StepStatus.COMPENSATING)


def worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# --- the plan as a graph ------------------------------------------------------------------------------


def current_phase(plan: Plan, statuses: dict[str, str]) -> str:
    """The first phase with a step not yet succeeded; COMPLETED when there is none."""
    for phase in plan.phases:
        if any(statuses.get(step.name) != StepStatus.SUCCEEDED for step in plan.steps_of(phase)):
            return phase
    return "COMPLETED"


def ready_steps(plan: Plan, statuses: dict[str, str]) -> list[str]:
    """PENDING steps of the current phase whose dependencies have all succeeded."""
    phase = current_phase(plan, statuses)
    if phase == "COMPLETED":
        return []
    return [
        step.name for step in plan.steps_of(phase)
        if statuses.get(step.name) == StepStatus.PENDING
        and all(statuses.get(name) == StepStatus.SUCCEEDED for name in step.after)
    ]


# --- sending -----------------------------------------------------------------------------------------


def send_steps(job_id, names: list[str]) -> None:
    from provisioning.tasks import run_step

    for name in names:
        run_step.delay(str(job_id), name)


def send_compensation(job_id, countdown: float = 0) -> None:
    from provisioning.tasks import compensate

    compensate.apply_async((str(job_id),), countdown=countdown or None)


def _on_commit_publish(tenant_id, job_id, version, status) -> None:
    transaction.on_commit(lambda: publish_change(tenant_id=tenant_id, job_id=job_id, version=version,
                                                 status=status))


# --- starting and resuming ------------------------------------------------------------------------------


def ensure_step_runs(job: ProvisioningJob) -> None:
    plan = plan_for(job.tier)
    StepRun.objects.bulk_create(
        [StepRun(job_id=job.id, name=step.name, phase=step.phase, position=index)
         for index, step in enumerate(plan.steps)],
        ignore_conflicts=True,
    )


START_SQL = f"""
WITH j AS (
    UPDATE {JOB_TABLE} SET status = 'RUNNING', version = version + 1, updated_at = now(), started_at = now(),
        lease_owner = %(owner)s, lease_expires_at = %(lease)s, current_state = %(first_phase)s
    WHERE id = %(job)s AND status = 'PENDING' AND tier = %(tier)s
    RETURNING version, tenant_id
), s AS (
    INSERT INTO {STEP_TABLE} (job_id, name, phase, position, status, attempts, compensation_attempts, error,
                              outputs, claimed_by)
    SELECT %(job)s, step.name, step.phase, step.position, 'PENDING', 0, 0, '', '{{}}'::jsonb, ''
    FROM unnest(%(names)s::varchar[], %(phases)s::varchar[], %(positions)s::int[]) AS step(name, phase, position)
    WHERE EXISTS (SELECT 1 FROM j)
    ON CONFLICT (job_id, name) DO NOTHING
), e AS (
    INSERT INTO {EVENT_TABLE} (job_id, seq, kind, step, message, data, created_at)
    SELECT %(job)s, j.version, 'job.started', '', %(message)s, '{{}}'::jsonb, now() FROM j
)
SELECT version, tenant_id FROM j
"""


def start_job(job_id, tier: str | None = None) -> bool:
    """PENDING -> RUNNING, make its steps, send the first, in one statement. False if it was not PENDING."""
    if tier is None:
        tier = ProvisioningJob.objects.filter(id=job_id).values_list("tier", flat=True).first()
        if tier is None:
            return False
    plan = plan_for(tier)
    with connection.cursor() as cursor:
        cursor.execute(START_SQL, {
            "job": job_id, "tier": tier, "owner": worker_identity(), "lease": lease_until(timezone.now()),
            "first_phase": plan.phases[0], "message": f"Provisioning a {tier} tenant.",
            "names": [step.name for step in plan.steps], "phases": [step.phase for step in plan.steps],
            "positions": list(range(len(plan.steps))),
        })
        row = cursor.fetchone()
    if row is None:
        return False
    version, tenant_id = row
    publish_change(tenant_id=tenant_id, job_id=job_id, version=version, status=S.RUNNING)
    send_steps(job_id, [step.name for step in plan.steps if plan.is_ready(step, set())])
    return True


# --- running one step -------------------------------------------------------------------------------------
#
# The hot path is two statements per step, each one round trip: the claim (step
# RUNNING with its lease, the job's phase and version, an event, and the job and
# tenant read back) and the success (step SUCCEEDED, the job's succeeded_steps
# appended under its row lock, the job's lease pushed forward, an event).

CLAIM_SQL = f"""
WITH s AS (
    UPDATE {STEP_TABLE} SET status = 'RUNNING', attempts = attempts + 1, started_at = now(), finished_at = NULL,
        duration_ms = NULL, error = '', claimed_by = %(owner)s, lease_expires_at = %(lease)s
    WHERE job_id = %(job)s AND name = %(name)s AND status = 'PENDING'
      AND EXISTS (SELECT 1 FROM {JOB_TABLE} WHERE id = %(job)s AND status = 'RUNNING')
    RETURNING id, attempts, phase
), j AS (
    -- A new version for the live views, and the job's state is the phase now running
    -- (no indexed column changes: a HOT update).
    UPDATE {JOB_TABLE} SET version = version + 1, updated_at = now(), current_state = (SELECT phase FROM s)
    WHERE id = %(job)s AND status = 'RUNNING' AND EXISTS (SELECT 1 FROM s)
    RETURNING version
), e AS (
    INSERT INTO {EVENT_TABLE} (job_id, seq, kind, step, message, data, created_at)
    SELECT %(job)s, j.version, 'step.started', %(name)s, %(message)s,
           jsonb_build_object('attempt', (SELECT attempts FROM s)), now()
    FROM j
)
SELECT s.id, s.attempts, s.phase, coalesce((SELECT version FROM j), job.version), job.status, job.tenant_id,
       job.tier, job.context,
       t.name, t.slug, t.tier, t.status, t.region, t.admin_email, t.service_principal_encrypted, ts.values
FROM s
JOIN {JOB_TABLE} job ON job.id = %(job)s
JOIN tenants_tenant t ON t.id = job.tenant_id
LEFT JOIN tenants_tenantsettings ts ON ts.tenant_id = job.tenant_id
"""

SUCCEED_SQL = f"""
WITH s AS (
    UPDATE {STEP_TABLE} SET status = 'SUCCEEDED', outputs = %(outputs)s, finished_at = now(),
        succeeded_at = now(), duration_ms = %(duration)s, lease_expires_at = NULL
    WHERE id = %(step)s AND status = 'RUNNING' AND claimed_by = %(owner)s
    RETURNING id
), j AS (
    -- The lease moves only once half of it is used: an unchanged indexed column keeps the update HOT.
    UPDATE {JOB_TABLE} SET version = version + 1, updated_at = now(),
        lease_expires_at = CASE WHEN lease_expires_at IS NULL OR lease_expires_at < %(renew_before)s
                                THEN %(lease)s ELSE lease_expires_at END,
        succeeded_steps = array_append(succeeded_steps, %(name)s), context = context || %(context)s
    WHERE id = %(job)s AND EXISTS (SELECT 1 FROM s)
    RETURNING version, status, succeeded_steps, tenant_id
), e AS (
    INSERT INTO {EVENT_TABLE} (job_id, seq, kind, step, message, data, created_at)
    SELECT %(job)s, j.version, 'step.succeeded', %(name)s, %(message)s, '{{}}'::jsonb, now() FROM j
)
SELECT version, status, succeeded_steps, tenant_id FROM j
"""


@dataclass
class Claim:
    step_id: int
    attempts: int
    phase: str
    owner: str
    job_version: int
    tier: str
    context: dict
    tenant: Tenant
    tenant_settings: dict


def _json(value):
    return json.loads(value) if isinstance(value, str) else value


def _settings_of(tenant: Tenant) -> dict:
    return getattr(getattr(tenant, "settings", None), "values", None) or {}


def claim_step(job_id, name: str) -> tuple[Claim | None, StepRun | None]:
    """Claim the step (PENDING, or RUNNING with a lapsed lease). (claim, None) or (None, current row)."""
    owner = f"{worker_identity()}:{time.monotonic_ns()}"
    lease = lease_until(timezone.now())
    with connection.cursor() as cursor:
        cursor.execute(CLAIM_SQL, {"job": job_id, "name": name, "owner": owner, "lease": lease,
                                   "message": f"{name} started."})
        row = cursor.fetchone()
    if row is None:
        return _take_over_lapsed(job_id, name, owner)
    # The job's status is checked in the claim's snapshot: a cancel that commits while we
    # claim finds this step RUNNING, lets it finish, then undoes it (as for any running step).
    step_id, attempts, phase, version, job_status, tenant_id, tier, context, *tenant_row = row
    t_name, t_slug, t_tier, t_status, t_region, t_email, t_principal, t_settings = tenant_row
    # Django leaves jsonb undecoded on raw cursors (JSONField decodes it); decode it here.
    context, t_settings = _json(context), _json(t_settings)
    tenant = Tenant(id=tenant_id, name=t_name, slug=t_slug, tier=t_tier, status=t_status, region=t_region,
                    admin_email=t_email, service_principal_encrypted=t_principal)
    publish_change(tenant_id=tenant_id, job_id=job_id, version=version, status=S.RUNNING)
    return Claim(step_id=step_id, attempts=attempts, phase=phase, owner=owner, job_version=version, tier=tier,
                 context=context, tenant=tenant, tenant_settings=t_settings or {}), None


def _take_over_lapsed(job_id, name: str, owner: str) -> tuple[Claim | None, StepRun | None]:
    """A RUNNING step whose lease lapsed (its worker died) is taken over; anything else is left alone."""
    now = timezone.now()
    current = StepRun.objects.filter(job_id=job_id, name=name).first()
    if current is None or current.status != StepStatus.RUNNING or current.lease_expires_at is None \
            or current.lease_expires_at > now:
        return None, current
    with transaction.atomic():
        job = ProvisioningJob.objects.select_for_update().select_related("tenant", "tenant__settings") \
            .filter(id=job_id, status=S.RUNNING).first()
        if job is None:
            return None, current
        taken = StepRun.objects.filter(id=current.id, status=StepStatus.RUNNING,
                                       claimed_by=current.claimed_by).update(
            attempts=F("attempts") + 1, started_at=now, claimed_by=owner, lease_expires_at=lease_until(now))
        if not taken:
            return None, StepRun.objects.filter(id=current.id).first()
        version, _ = record(job_id, event="step.started", step=name, data={"attempt": current.attempts + 1},
                            message=f"{name} taken over from a worker that stopped.",
                            lease_expires_at=lease_until(now), current_state=current.phase)
    return Claim(step_id=current.id, attempts=current.attempts + 1, phase=current.phase, owner=owner,
                 job_version=version, tier=job.tier, context=job.context, tenant=job.tenant,
                 tenant_settings=_settings_of(job.tenant)), None


def run_step(job_id, name: str) -> str:
    """Run one step of a job; returns what happened (for logs and tests).

    1. Claim the step; a job that is not RUNNING starts nothing. If the step is
       done or another live worker holds it, this delivery was a duplicate.
    2. Run it with its lease renewed; commit the outputs, or the failure.
    3. Send the steps its success made ready, or complete the job.
    """
    claim, current = claim_step(job_id, name)
    if claim is None:
        # A duplicate delivery. Its successors went out when it succeeded; if the
        # worker died between commit and send, the lapsed job lease brings the sweeper.
        if current is not None and current.status == StepStatus.SUCCEEDED:
            return "already-succeeded"
        if current is not None and current.status == StepStatus.RUNNING:
            return "held-elsewhere"
        return "not-claimable"
    plan = plan_for(claim.tier)
    step = plan.step(name)
    backend = backend_for(simulate=claim.context.get("simulate"))
    ctx = StepContext(job_id=str(job_id), tenant=claim.tenant, tenant_settings=claim.tenant_settings,
                      job_context=claim.context, backend=backend, attempt=claim.attempts)
    heartbeat.hold(claim.step_id, job_id)
    started = time.monotonic()
    try:
        before_step = getattr(backend, "before_step", None)
        if before_step is not None:
            before_step(name, claim.attempts, step.nominal_seconds)
        outputs = IMPLEMENTATIONS[name].run(ctx) or {}
    except InfraError as error:
        fail_step(job_id, claim, name, error, started)
        return "failed"
    except Exception as error:  # an unexpected error is treated as transient, and shown as is
        log.exception("step %s of job %s raised", name, job_id)
        fail_step(job_id, claim, name,
                  TransientInfraError(f"{name} raised {type(error).__name__}: {error}",
                                      hint="See the worker's log for the traceback."), started)
        return "failed"
    finally:
        heartbeat.release(claim.step_id)
    succeed_step(job_id, plan, claim, name, outputs, ctx.context_updates, started)
    return "succeeded"


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def succeed_step(job_id, plan: Plan, claim: Claim, name: str, outputs: dict, context_updates: dict,
                 started: float) -> None:
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(SUCCEED_SQL, {
            "step": claim.step_id, "owner": claim.owner, "outputs": Jsonb(outputs), "duration": _elapsed_ms(started),
            "lease": lease_until(now), "renew_before": now + timedelta(seconds=settings.MATIH_STEP_LEASE / 2),
            "name": name, "context": Jsonb(context_updates), "job": job_id,
            "message": f"{name} succeeded.",
        })
        row = cursor.fetchone()
    if row is None:
        return  # our lease lapsed and another worker took the step over; its result stands
    version, job_status, succeeded, tenant_id = row
    publish_change(tenant_id=tenant_id, job_id=job_id, version=version, status=job_status)
    if job_status != S.RUNNING:
        if job_status in (S.ROLLING_BACK, S.CANCELLING):
            send_compensation(job_id)  # the compensator was waiting for this step to finish
        return
    succeeded = set(succeeded)
    if succeeded == set(plan.step_names):
        complete_job(job_id, slug=claim.tenant.slug, tier=claim.tier)
    else:
        send_steps(job_id, plan.newly_ready(succeeded, name))


def fail_step(job_id, claim: Claim, name: str, error: InfraError, started: float) -> None:
    """Record the failure; then retry later (transient, budget left) or roll back."""
    now = timezone.now()
    message = f"Step {name} ({claim.phase}) failed: {error.describe()}"
    tenant_id = claim.tenant.id
    with transaction.atomic():
        done = StepRun.objects.filter(id=claim.step_id, status=StepStatus.RUNNING, claimed_by=claim.owner).update(
            status=StepStatus.FAILED, error=message, finished_at=now, duration_ms=_elapsed_ms(started),
            lease_expires_at=None,
        )
        if not done:
            return
        current = ProvisioningJob.objects.select_for_update().only("retry_count", "max_retries", "status") \
            .get(id=job_id)
        if current.status != S.RUNNING:
            # Another step already failed the job, or it is being cancelled: the step stays FAILED.
            result = record(job_id, event="step.failed", step=name, message=message)
            _on_commit_publish(tenant_id, job_id, result[0], result[1])
            if current.status in (S.ROLLING_BACK, S.CANCELLING):
                transaction.on_commit(lambda: send_compensation(job_id))  # it was waiting for this step
            return
        if error.transient and current.retry_count < current.max_retries:
            delay = backoff_seconds(current.retry_count, error.retry_after)
            version = transition(
                job_id, from_=[S.RUNNING], to=S.RETRY_SCHEDULED, event="job.retry_scheduled",
                step=name, message=message,
                data={"retry": current.retry_count + 1, "delaySeconds": round(delay, 3)},
                retry_count=current.retry_count + 1, next_retry_at=now + timezone.timedelta(seconds=delay),
                error_message=message, lease_expires_at=None,
            )
            _on_commit_publish(tenant_id, job_id, version, S.RETRY_SCHEDULED)
            return
        reason = message if not error.transient else f"{message} (retries exhausted: {current.retry_count})"
        version = transition(job_id, from_=[S.RUNNING], to=S.ROLLING_BACK, event="job.rolling_back",
                             step=name, message=reason, error_message=reason,
                             lease_expires_at=lease_until(now))
        _on_commit_publish(tenant_id, job_id, version, S.ROLLING_BACK)
        transaction.on_commit(lambda: send_compensation(job_id))


# --- completion ------------------------------------------------------------------------------------------


COMPLETE_SQL = f"""
WITH j AS (
    UPDATE {JOB_TABLE} SET status = 'COMPLETED', version = version + 1, updated_at = now(), completed_at = now(),
        current_state = 'COMPLETED', lease_expires_at = NULL, next_retry_at = NULL, error_message = ''
    WHERE id = %(job)s AND status = 'RUNNING' AND succeeded_steps @> %(steps)s::varchar[]
    RETURNING version, tenant_id, context -> 'cluster' ->> 'name' AS cluster
), t AS (
    UPDATE tenants_tenant SET status = 'ACTIVE', provisioned_at = now(), error_message = '', updated_at = now(),
        deployment_type = %(deployment_type)s, kubernetes_namespace = %(namespace)s,
        azure_aks_cluster_name = j.cluster, dns_zone = %(dns_zone)s
    FROM j WHERE tenants_tenant.id = j.tenant_id
), e AS (
    INSERT INTO {EVENT_TABLE} (job_id, seq, kind, step, message, data, created_at)
    SELECT %(job)s, j.version, 'job.completed', '', 'Provisioning completed; the tenant is ACTIVE.',
           '{{}}'::jsonb, now() FROM j
)
SELECT version, tenant_id FROM j
"""


def complete_job(job_id, *, slug: str | None = None, tier: str | None = None) -> bool:
    """RUNNING -> COMPLETED and the tenant ACTIVE, in one statement, once every step has succeeded.

    Only a verified tenant becomes ACTIVE: VERIFY_CONNECTIVITY is one of the steps required here.
    """
    if slug is None or tier is None:
        slug, tier = Tenant.objects.filter(provisioning_jobs__id=job_id).values_list("slug", "tier").first() \
            or (None, None)
        if slug is None:
            return False
    with connection.cursor() as cursor:
        cursor.execute(COMPLETE_SQL, {
            "job": job_id, "steps": list(plan_for(tier).step_names), "namespace": namespace_for(slug),
            "deployment_type": DeploymentType.DEDICATED if tier == "ENTERPRISE" else DeploymentType.SHARED,
            "dns_zone": f"{slug}.{settings.MATIH_DNS_PARENT_ZONE}",
        })
        row = cursor.fetchone()
    if row is None:
        return False
    version, tenant_id = row
    publish_change(tenant_id=tenant_id, job_id=job_id, version=version, status=S.COMPLETED)
    _notify(job_id)
    return True


def _notify(job_id) -> None:
    from provisioning.tasks import notify_job_finished

    try:
        notify_job_finished.delay(str(job_id))
    except Exception:  # a notification never fails a job
        log.warning("notification not queued", extra={"jobId": str(job_id)}, exc_info=True)


# --- rollback and cancel ------------------------------------------------------------------------------------


def compensate_next(job_id) -> str:
    """Undo the next step, latest first; finish the job when nothing is left to undo.

    1. Wait while a step still runs (it finishes; cancel never interrupts one).
    2. Pick the last step (by plan position) that succeeded or failed and has
       something to undo, or one whose compensation is due again.
    3. Run its compensation with a lease; on success send the next round; on a
       transient error retry it after the backoff; when its budget is spent
       mark it COMPENSATION_FAILED and go on.
    4. Nothing left: ROLLING_BACK -> FAILED or CANCELLING -> CANCELLED, tenant FAILED.
    """
    now = timezone.now()
    job = ProvisioningJob.objects.select_related("tenant", "tenant__settings").filter(id=job_id).first()
    if job is None or job.status not in (S.ROLLING_BACK, S.CANCELLING):
        return "not-rolling-back"
    steps = list(StepRun.objects.filter(job_id=job_id).order_by("-position"))
    live = [s for s in steps if s.status in ACTIVE_STEP_STATUSES and s.lease_expires_at and s.lease_expires_at > now]
    if live:
        return "waiting"  # the running step's end (or its lease lapse, via the sweeper) sends us again
    for step_run in steps:
        if step_run.status == StepStatus.RUNNING:
            # Its worker died mid-step: whatever it did is undone below.
            StepRun.objects.filter(id=step_run.id, status=StepStatus.RUNNING).update(
                status=StepStatus.FAILED, error="The worker running this step died.", finished_at=now)
            step_run.status = StepStatus.FAILED
    candidate = next(
        (s for s in steps
         if IMPLEMENTATIONS[s.name].compensate is not None
         and (s.status in (StepStatus.SUCCEEDED, StepStatus.FAILED) or s.status == StepStatus.COMPENSATING)
         and not (s.status == StepStatus.FAILED and s.attempts == 0)),
        None,
    )
    if candidate is None:
        finish_rollback(job)
        return "finished"
    owner = f"{worker_identity()}:{time.monotonic_ns()}"
    with transaction.atomic():
        claimed = StepRun.objects.filter(id=candidate.id, status=candidate.status,
                                         lease_expires_at=candidate.lease_expires_at).update(
            status=StepStatus.COMPENSATING, compensation_attempts=F("compensation_attempts") + 1,
            claimed_by=owner, lease_expires_at=lease_until(now),
        )
        if not claimed:
            return "raced"
        result = record(job_id, event="step.compensating", step=candidate.name,
                        message=f"Undoing {candidate.name}.", lease_expires_at=lease_until(now))
        _on_commit_publish(job.tenant_id, job_id, result[0], result[1])
    attempts = candidate.compensation_attempts + 1
    ctx = StepContext(job_id=str(job_id), tenant=job.tenant, tenant_settings=_settings_of(job.tenant),
                      job_context=job.context, backend=backend_for(simulate=job.context.get("simulate")))
    heartbeat.hold(candidate.id, job_id)
    try:
        IMPLEMENTATIONS[candidate.name].compensate(ctx, candidate.outputs)
    except Exception as exc:
        error = exc if isinstance(exc, InfraError) else TransientInfraError(f"{type(exc).__name__}: {exc}")
        _compensation_failed(job, candidate, owner, error, attempts)
        return "compensation-failed"
    finally:
        heartbeat.release(candidate.id)
    with transaction.atomic():
        StepRun.objects.filter(id=candidate.id, claimed_by=owner).update(
            status=StepStatus.COMPENSATED, lease_expires_at=None)
        result = record(job_id, event="step.compensated", step=candidate.name,
                        message=f"{candidate.name} undone.", lease_expires_at=lease_until(now))
        _on_commit_publish(job.tenant_id, job_id, result[0], result[1])
        transaction.on_commit(lambda: send_compensation(job_id))
    return "compensated"


def _compensation_failed(job, step_run: StepRun, owner: str, error: InfraError, attempts: int) -> None:
    now = timezone.now()
    message = f"Undoing {step_run.name} failed: {error.describe()}"
    with transaction.atomic():
        if error.transient and attempts <= job.max_retries:
            delay = backoff_seconds(attempts - 1, error.retry_after)
            # Left COMPENSATING with its lease set to the retry time: the retry (or the sweeper) takes it then.
            StepRun.objects.filter(id=step_run.id, claimed_by=owner).update(
                error=message, lease_expires_at=now + timezone.timedelta(seconds=delay))
            result = record(job.id, event="step.compensation_retry", step=step_run.name, message=message,
                            data={"delaySeconds": round(delay, 3)}, lease_expires_at=lease_until(now, delay))
            transaction.on_commit(lambda: send_compensation(job.id, countdown=delay + 0.05))
        else:
            StepRun.objects.filter(id=step_run.id, claimed_by=owner).update(
                status=StepStatus.COMPENSATION_FAILED, error=message, lease_expires_at=None)
            result = record(job.id, event="step.compensation_failed", step=step_run.name, message=message,
                            lease_expires_at=lease_until(now))
            transaction.on_commit(lambda: send_compensation(job.id))
        _on_commit_publish(job.tenant_id, job.id, result[0], result[1])


def finish_rollback(job: ProvisioningJob) -> bool:
    now = timezone.now()
    final = S.FAILED if job.status == S.ROLLING_BACK else S.CANCELLED
    leftovers = list(StepRun.objects.filter(job_id=job.id, status=StepStatus.COMPENSATION_FAILED)
                     .values_list("name", flat=True))
    message = job.error_message or "Provisioning was cancelled."
    if final == S.CANCELLED:
        message = "Provisioning was cancelled; everything it created was removed."
    if leftovers:
        message += (f" Could not undo: {', '.join(leftovers)}; remove those resources by hand "
                    f"(see the job's events), then retry.")
    with transaction.atomic():
        version = transition(job.id, from_=[job.status], to=final,
                             event="job.failed" if final == S.FAILED else "job.cancelled",
                             message=message, completed_at=now, error_message=message, lease_expires_at=None,
                             next_retry_at=None)
        if version is None:
            return False
        Tenant.objects.filter(id=job.tenant_id).update(status=TenantStatus.FAILED, error_message=message,
                                                       updated_at=now)
        _on_commit_publish(job.tenant_id, job.id, version, final)
        transaction.on_commit(lambda: _notify(job.id))
    return True
