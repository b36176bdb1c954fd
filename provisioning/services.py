"""Writes an operator or a tenant admin asks for on a job: retry, cancel, roll back.

The API, the admin actions and the CLI call these; each is one transaction with a
compare-and-swap on the job, and sends its canvas on commit.
"""
from __future__ import annotations

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from provisioning.engine import resume as R
from provisioning.engine.canvas import dispatch_job
from provisioning.engine.plans import Kind, plan_for
from provisioning.engine.rollback import send_job_rollback
from provisioning.engine.states import lease_until, transition
from provisioning.live.publish import publish_change
from provisioning.models import JobStatus, ProvisioningJob
from tenants.models import Tenant, TenantStatus

S = JobStatus


class ActionRefused(Exception):
    """The job or tenant is in a state where the action does not apply (HTTP 409)."""


def _publish_on_commit(job: ProvisioningJob, version: int, status: str) -> None:
    transaction.on_commit(lambda: publish_change(tenant_id=job.tenant_id, job_id=job.id, version=version,
                                                 status=status))


def _simulate_context(simulate: dict | None) -> dict:
    return {} if simulate is None else {"simulate": simulate}


def job_resume_now(*, job: ProvisioningJob, actor: str = "operator", simulate: dict | None = None) -> ProvisioningJob:
    """RETRY_SCHEDULED -> RUNNING at once, from the failed step (`simulate` replaces its fault injection)."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SELECT status FROM {ProvisioningJob._meta.db_table} WHERE id = %s FOR UPDATE", [job.id])
        row = cursor.fetchone()
        if row is None or row[0] != S.RETRY_SCHEDULED:
            raise ActionRefused(f"The job is {row[0] if row else 'gone'}, not RETRY_SCHEDULED.")
        extra, params = "", {}
        if simulate is not None:
            extra, params = ", context = context || %(context)s", {"context": _jsonb({"simulate": simulate})}
        resumed = R.resume(cursor, [job.id], transitions=[R.RETRY_DUE], lease=lease_until(timezone.now()),
                           event="job.resumed", message=f"Resumed now by {actor}.", reset_failed_steps=True,
                           extra_set=", next_retry_at = NULL" + extra, params=params)
        if not resumed:
            raise ActionRefused(f"The job is {_status(job)}, not RETRY_SCHEDULED.")
        transaction.on_commit(lambda: R.send(resumed))
    return ProvisioningJob.objects.get(id=job.id)


def _jsonb(value: dict):
    from psycopg.types.json import Jsonb

    return Jsonb(value)


def job_restart(*, tenant: Tenant, initiated_by=None, simulate: dict | None = None) -> ProvisioningJob:
    """A tenant whose provisioning FAILED or was CANCELLED is provisioned anew, from the start.

    The new job keeps the last one's fault injection unless `simulate` replaces it.
    """
    now = timezone.now()
    try:
        with transaction.atomic():
            updated = Tenant.objects.filter(id=tenant.id, status=TenantStatus.FAILED).update(
                status=TenantStatus.PROVISIONING, error_message="", provisioning_started_at=now, updated_at=now)
            if not updated:
                raise ActionRefused(f"The tenant is {tenant.status}; only a FAILED tenant is provisioned anew.")
            latest = ProvisioningJob.objects.filter(tenant=tenant).order_by("-created_at").first()
            context = dict(latest.context) if latest else {"slug": tenant.slug, "region": tenant.region}
            context.pop("cluster", None)
            if simulate is not None:
                context["simulate"] = simulate
            job = ProvisioningJob.objects.create(
                tenant=tenant, kind=Kind.PROVISION, tier=tenant.tier, initiated_by=initiated_by, context=context,
                max_retries=settings.MATIH_MAX_RETRIES)
            plan = plan_for(tenant.tier)
            transaction.on_commit(lambda: dispatch_job(job.id, plan))
    except IntegrityError:
        raise ActionRefused("The tenant already has a job in progress.") from None
    return job


def retry(*, tenant: Tenant, initiated_by=None, simulate: dict | None = None) -> ProvisioningJob:
    """The contract's retry: RETRY_SCHEDULED resumes now; a FAILED or CANCELLED provisioning starts anew.

    `simulate` (operators, simulated cloud; validated by the caller) replaces the job's faults.
    """
    job = ProvisioningJob.objects.filter(tenant=tenant).order_by("-created_at").first()
    if job is None:
        raise ActionRefused("The tenant has no job.")
    if job.status == S.RETRY_SCHEDULED:
        return job_resume_now(job=job, simulate=simulate)
    if job.status in (S.FAILED, S.CANCELLED) and job.kind == Kind.PROVISION:
        return job_restart(tenant=tenant, initiated_by=initiated_by, simulate=simulate)
    if job.status == S.FAILED and job.plan.is_forward_only(job.plan.position(job.succeeded_steps).current):
        return job_carry_on(job=job, initiated_by=initiated_by, simulate=simulate)
    raise ActionRefused(f"The {job.kind} job is {job.status}; only a RETRY_SCHEDULED job, or a FAILED or "
                        f"CANCELLED provisioning, can be retried.")


def job_carry_on(*, job: ProvisioningJob, initiated_by=None, simulate: dict | None = None) -> ProvisioningJob:
    """A job that failed forward (a deprovisioning, the shared side of an ENTERPRISE move) goes on:
    a new job of the same plan that starts with the steps the failed one finished (carried over,
    outputs and all), so only what is left runs."""
    from provisioning.models import StepRun, StepStatus

    context = dict(job.context)
    if simulate is not None:
        context["simulate"] = simulate
    try:
        with transaction.atomic():
            new = ProvisioningJob.objects.create(
                tenant_id=job.tenant_id, kind=job.kind, tier=job.tier, from_tier=job.from_tier, context=context,
                initiated_by=initiated_by if getattr(initiated_by, "pk", None) else None,
                max_retries=settings.MATIH_MAX_RETRIES, succeeded_steps=list(job.succeeded_steps))
            done = StepRun.objects.filter(job=job, status=StepStatus.SUCCEEDED)
            StepRun.objects.bulk_create([
                StepRun(job=new, name=s.name, phase=s.phase, position=s.position, status=StepStatus.SUCCEEDED,
                        attempts=s.attempts, started_at=s.started_at, finished_at=s.finished_at,
                        succeeded_at=s.succeeded_at, duration_ms=s.duration_ms, elapsed_ms=s.elapsed_ms,
                        outputs={**s.outputs, "carriedOverFrom": str(job.id)})
                for s in done])
            plan = job.plan
            transaction.on_commit(lambda: dispatch_job(new.id, plan))
    except IntegrityError:
        raise ActionRefused("The tenant already has a job in progress.") from None
    return new


def cancel(*, job: ProvisioningJob, actor: str = "operator") -> ProvisioningJob:
    """The running step finishes, nothing new starts, everything done is undone, CANCELLED."""
    now = timezone.now()
    with transaction.atomic():
        version = transition(job.id, from_=[S.PENDING, S.RUNNING, S.RETRY_SCHEDULED], to=S.CANCELLING,
                             event="job.cancelling", message=f"Cancelled by {actor}.", next_retry_at=None,
                             lease_expires_at=lease_until(now))
        if version is None:
            raise ActionRefused(f"The job is {_status(job)}; it can no longer be cancelled.")
        _publish_on_commit(job, version, S.CANCELLING)
        transaction.on_commit(lambda: send_job_rollback(job.id))
    return ProvisioningJob.objects.get(id=job.id)


def roll_back(*, job: ProvisioningJob, actor: str = "operator") -> ProvisioningJob:
    """Undo what the job did and end it FAILED (the admin's "roll back")."""
    now = timezone.now()
    message = f"Rolled back by {actor}."
    with transaction.atomic():
        version = transition(job.id, from_=[S.RUNNING, S.RETRY_SCHEDULED], to=S.ROLLING_BACK,
                             event="job.rolling_back", message=message, error_message=message,
                             next_retry_at=None, lease_expires_at=lease_until(now))
        if version is None:
            raise ActionRefused(f"The job is {_status(job)}; only RUNNING or RETRY_SCHEDULED jobs roll back.")
        _publish_on_commit(job, version, S.ROLLING_BACK)
        transaction.on_commit(lambda: send_job_rollback(job.id))
    return ProvisioningJob.objects.get(id=job.id)


def _status(job: ProvisioningJob) -> str:
    return ProvisioningJob.objects.filter(id=job.id).values_list("status", flat=True).first() or "gone"
