"""Writes an operator or a tenant admin asks for: retry, cancel, roll back.

The API, the admin actions and the CLI call these; each is one transaction
with a compare-and-swap on the job, and sends its messages on commit.
"""
from __future__ import annotations

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from provisioning.models import JobStatus, ProvisioningJob, StepRun
from provisioning.engine.runner import complete_job, current_phase, ready_steps, send_compensation, send_steps
from provisioning.engine.plans import plan_for
from provisioning.live.publish import publish_change
from provisioning.engine.states import lease_until, transition
from tenants.models import Tenant, TenantStatus

S = JobStatus


class ActionRefused(Exception):
    """The job is in a state where the action does not apply (HTTP 409)."""


def _publish_on_commit(job: ProvisioningJob, version: int, status: str) -> None:
    transaction.on_commit(lambda: publish_change(tenant_id=job.tenant_id, job_id=job.id, version=version,
                                                 status=status))


def job_resume_now(*, job: ProvisioningJob, actor: str = "operator") -> ProvisioningJob:
    """RETRY_SCHEDULED -> RUNNING at once, from the failed step."""
    now = timezone.now()
    with transaction.atomic():
        version = transition(job.id, from_=[S.RETRY_SCHEDULED], to=S.RUNNING, event="job.resumed",
                             message=f"Resumed now by {actor}.", next_retry_at=None,
                             lease_expires_at=lease_until(now))
        if version is None:
            raise ActionRefused(f"The job is {_status(job)}, not RETRY_SCHEDULED.")
        StepRun.objects.filter(job_id=job.id, status="FAILED").update(status="PENDING", claimed_by="",
                                                                       lease_expires_at=None)
        statuses = dict(StepRun.objects.filter(job_id=job.id).values_list("name", "status"))
        _publish_on_commit(job, version, S.RUNNING)
    plan = plan_for(job.tier)
    if current_phase(plan, statuses) == "COMPLETED":
        complete_job(job.id)
    else:
        send_steps(job.id, ready_steps(plan, statuses))
    return ProvisioningJob.objects.get(id=job.id)


def job_restart(*, tenant: Tenant, initiated_by=None) -> ProvisioningJob:
    """A tenant whose last job FAILED or was CANCELLED gets a new job from the start."""
    from provisioning.engine.canvas import dispatch_job

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
            job = ProvisioningJob.objects.create(
                tenant=tenant, tier=tenant.tier, initiated_by=initiated_by, context=context,
                max_retries=settings.MATIH_MAX_RETRIES)
            transaction.on_commit(lambda: dispatch_job(job.id))
    except IntegrityError:
        raise ActionRefused("The tenant already has a job in progress.") from None
    return job


def retry(*, tenant: Tenant, initiated_by=None) -> ProvisioningJob:
    """The contract's retry: RETRY_SCHEDULED resumes now; FAILED (or CANCELLED) starts a new job."""
    job = ProvisioningJob.objects.filter(tenant=tenant).order_by("-created_at").first()
    if job is None:
        raise ActionRefused("The tenant has no provisioning job.")
    if job.status == S.RETRY_SCHEDULED:
        return job_resume_now(job=job)
    if job.status in (S.FAILED, S.CANCELLED):
        return job_restart(tenant=tenant, initiated_by=initiated_by)
    raise ActionRefused(f"The job is {job.status}; only RETRY_SCHEDULED, FAILED or CANCELLED jobs can be retried.")


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
        transaction.on_commit(lambda: send_compensation(job.id))
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
        transaction.on_commit(lambda: send_compensation(job.id))
    return ProvisioningJob.objects.get(id=job.id)


def _status(job: ProvisioningJob) -> str:
    return ProvisioningJob.objects.filter(id=job.id).values_list("status", flat=True).first() or "gone"
