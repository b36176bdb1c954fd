"""The tenant's life after provisioning: change tier, suspend, activate, delete, restore (DESIGN.md
section 6). Each is one transaction that checks the tenant's status, makes the operation's job
(at most one open job per tenant, whatever its kind: a partial unique constraint) and sends its
canvas when the transaction commits. The API and the admin call these.

Refusals carry a code for the API: `invalid_state` (409, with the tenant's current status in the
sentence), `downgrade_unsupported` (409), `job_open` (409); bad input is Invalid (400, naming the
field).
"""
from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from billing.models import Tier
from deploy.models import Cluster, ClusterSlot
from matih.secrets import encrypt_json
from provisioning.engine.canvas import dispatch_job
from provisioning.engine.plans import Kind, has_plan, plan_of
from provisioning.engine.steps.context import cluster_info
from provisioning.models import TERMINAL_JOB_STATUSES, ProvisioningJob
from provisioning.services import ActionRefused
from tenants.models import Tenant, TenantStatus

T = TenantStatus


class Invalid(Exception):
    """Bad input for an operation (HTTP 400): which field, and why."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def refuse(code: str, detail: str) -> ActionRefused:
    refused = ActionRefused(detail)
    refused.code = code
    return refused


def _invalid_state(tenant: Tenant, wanted: str) -> ActionRefused:
    return refuse("invalid_state", f"The tenant is {tenant.status}; {wanted}.")


def _open_job(tenant: Tenant) -> ProvisioningJob | None:
    return (ProvisioningJob.objects.filter(tenant=tenant).exclude(status__in=TERMINAL_JOB_STATUSES)
            .order_by("-created_at").first())


def _refuse_if_job_open(tenant: Tenant) -> None:
    job = _open_job(tenant)
    if job is not None:
        raise refuse("job_open", f"The tenant has a {job.kind} job {job.status} ({job.id}); "
                                 f"wait for it to end, or cancel it first.")


def current_clusters(tenant: Tenant) -> dict:
    """Where the tenant lives, as a job's context keeps it: its dedicated cluster, or its shared slot's."""
    found = {}
    slot = ClusterSlot.objects.select_related("cluster").filter(tenant_key=tenant.slug).first()
    dedicated = Cluster.objects.filter(name=f"aks-{tenant.slug}", kind=Cluster.Kind.DEDICATED).first()
    if dedicated is not None and tenant.tier == Tier.ENTERPRISE:
        found["cluster"] = cluster_info(dedicated, dedicated=True)
        if slot is not None:
            found["sharedCluster"] = cluster_info(slot.cluster, dedicated=False)
    elif slot is not None:
        found["cluster"] = cluster_info(slot.cluster, dedicated=False)
        found["sharedCluster"] = found["cluster"]
    return found


def _context(tenant: Tenant, **extra) -> dict:
    latest = ProvisioningJob.objects.filter(tenant=tenant).order_by("-created_at").first()
    context = {"slug": tenant.slug, "region": tenant.region, **current_clusters(tenant)}
    simulate = (latest.context.get("simulate") if latest else None) or None
    if simulate and "timeScale" in simulate:
        context["simulate"] = {"timeScale": simulate["timeScale"]}  # the tenant's pace, not its faults
    context.update({key: value for key, value in extra.items() if value is not None})
    return context


def start_job(*, tenant: Tenant, kind: str, tier: str, from_tier: str | None = None, context: dict,
              initiated_by=None) -> ProvisioningJob:
    """Make the operation's PENDING job (inside the caller's transaction) and send its canvas on commit."""
    plan = plan_of(kind, tier, from_tier)
    try:
        with transaction.atomic():
            job = ProvisioningJob.objects.create(
                tenant=tenant, kind=kind, tier=tier, from_tier=from_tier, context=context,
                initiated_by=initiated_by if getattr(initiated_by, "pk", None) else None,
                max_retries=settings.MATIH_MAX_RETRIES)
    except IntegrityError:
        raise refuse("job_open", "The tenant already has a job in progress; wait for it to end, "
                                 "or cancel it first.") from None
    transaction.on_commit(lambda: dispatch_job(job.id, plan))
    return job


def _locked(tenant: Tenant) -> Tenant:
    return Tenant.objects.select_for_update().get(id=tenant.id)


# --- change tier --------------------------------------------------------------------------------------


def change_tier(*, tenant: Tenant, new_tier: str, service_principal: dict | None = None,
                simulate: dict | None = None, initiated_by=None) -> ProvisioningJob:
    """ACTIVE -> UPGRADING and a CHANGE_TIER job (a delta between shared tiers, or onto ENTERPRISE)."""
    if new_tier not in Tier.values:
        raise Invalid("newTier", f"Must be one of {', '.join(Tier.values)}.")
    with transaction.atomic():
        tenant = _locked(tenant)
        # What the tenant can do now first (409), then what the request asks of it (400).
        if tenant.status != T.ACTIVE:
            raise _invalid_state(tenant, "only an ACTIVE tenant changes tier")
        _refuse_if_job_open(tenant)
        if new_tier == tenant.tier:
            raise Invalid("newTier", f"The tenant is already {tenant.tier}.")
        if tenant.tier == Tier.ENTERPRISE:
            raise refuse("downgrade_unsupported", f"An ENTERPRISE tenant cannot move to {new_tier}: its dedicated "
                                                  f"cluster has no way back to a shared one.")
        if new_tier == Tier.ENTERPRISE and not service_principal:
            raise Invalid("servicePrincipal", "Required to move to ENTERPRISE (clientId, clientSecret, "
                                              "azureTenantId, subscriptionId).")
        if new_tier != Tier.ENTERPRISE and service_principal:
            raise Invalid("servicePrincipal", "ENTERPRISE only.")
        if not has_plan(Kind.CHANGE_TIER, new_tier, tenant.tier):
            raise refuse("invalid_state", f"No plan moves a {tenant.tier} tenant to {new_tier}.")
        context = _context(tenant)
        if simulate is not None:
            context["simulate"] = simulate
        job = start_job(tenant=tenant, kind=Kind.CHANGE_TIER, tier=new_tier, from_tier=tenant.tier, context=context,
                        initiated_by=initiated_by)
        fields = {"status": T.UPGRADING, "error_message": "", "updated_at": timezone.now()}
        if service_principal:
            fields["service_principal_encrypted"] = encrypt_json(service_principal)
        Tenant.objects.filter(id=tenant.id).update(**fields)
    return job


# --- suspend and activate -------------------------------------------------------------------------------


def suspend(*, tenant: Tenant, reason: str = "", initiated_by=None, simulate: dict | None = None) -> ProvisioningJob:
    """An ACTIVE tenant's workloads to zero and its ingress to 503 (SUSPENDED when the job completes)."""
    with transaction.atomic():
        tenant = _locked(tenant)
        if tenant.status != T.ACTIVE:
            raise _invalid_state(tenant, "only an ACTIVE tenant is suspended")
        _refuse_if_job_open(tenant)
        context = _context(tenant, reason=reason or "")
        if simulate is not None:
            context["simulate"] = simulate
        return start_job(tenant=tenant, kind=Kind.SUSPEND, tier=tenant.tier, context=context,
                         initiated_by=initiated_by)


def activate(*, tenant: Tenant, initiated_by=None, simulate: dict | None = None) -> ProvisioningJob:
    """A SUSPENDED tenant back: access, quota, workloads, verified (ACTIVE when the job completes)."""
    with transaction.atomic():
        tenant = _locked(tenant)
        if tenant.status != T.SUSPENDED:
            raise _invalid_state(tenant, "only a SUSPENDED tenant is activated")
        _refuse_if_job_open(tenant)
        context = _context(tenant)
        if simulate is not None:
            context["simulate"] = simulate
        return start_job(tenant=tenant, kind=Kind.ACTIVATE, tier=tenant.tier, context=context,
                         initiated_by=initiated_by)


# --- delete, restore, deprovision ------------------------------------------------------------------------

DELETABLE = (T.ACTIVE, T.SUSPENDED, T.FAILED)


def request_deletion(*, tenant: Tenant, grace_seconds: int | None = None, initiated_by=None,
                     simulate: dict | None = None) -> Tenant:
    """PENDING_DELETION until deletionScheduledAt (MATIH_DELETION_GRACE by default); an ACTIVE tenant is
    suspended at once (its SUSPEND job starts now), a SUSPENDED or FAILED one has nothing to suspend."""
    grace = settings.MATIH_DELETION_GRACE if grace_seconds is None else grace_seconds
    if grace < 0:
        raise Invalid("graceSeconds", "Must be 0 or more.")
    now = timezone.now()
    with transaction.atomic():
        tenant = _locked(tenant)
        if tenant.status in (T.PENDING_DELETION, T.DELETED):
            raise _invalid_state(tenant, "its deletion was already asked for" if tenant.status == T.PENDING_DELETION
                                 else "it is gone")
        if tenant.status not in DELETABLE:
            raise _invalid_state(tenant, "cancel its job or wait for it to end, then delete it")
        _refuse_if_job_open(tenant)
        before = tenant.status
        Tenant.objects.filter(id=tenant.id).update(
            status=T.PENDING_DELETION, status_before_deletion=before,
            deletion_scheduled_at=now + timedelta(seconds=grace), updated_at=now)
        context = _context(tenant, reason="deletion requested")
        if simulate is not None:
            context["simulate"] = simulate
            # Kept for the deprovisioning the sweeper starts when the grace period ends.
            Tenant.objects.filter(id=tenant.id).update(deletion_options={"simulate": simulate})
        if before == T.ACTIVE:
            start_job(tenant=tenant, kind=Kind.SUSPEND, tier=tenant.tier, context=context, initiated_by=initiated_by)
    return Tenant.objects.get(id=tenant.id)


def restore(*, tenant: Tenant, initiated_by=None) -> Tenant:
    """Before deletionScheduledAt: back to what it was (an ACTIVE tenant comes back SUSPENDED, then its
    ACTIVATE job runs; a SUSPENDED one stays SUSPENDED; a FAILED one stays FAILED)."""
    now = timezone.now()
    with transaction.atomic():
        tenant = _locked(tenant)
        if tenant.status != T.PENDING_DELETION:
            raise _invalid_state(tenant, "only a tenant PENDING_DELETION is restored")
        if tenant.deletion_scheduled_at is not None and tenant.deletion_scheduled_at <= now:
            raise refuse("invalid_state", f"The tenant is {tenant.status} and its grace period ended at "
                                          f"{tenant.deletion_scheduled_at.isoformat()}; it is being deleted.")
        _refuse_if_job_open(tenant)
        before = tenant.status_before_deletion or T.SUSPENDED
        back_to = T.SUSPENDED if before == T.ACTIVE else before
        Tenant.objects.filter(id=tenant.id).update(status=back_to, deletion_scheduled_at=None,
                                                   status_before_deletion="", deletion_options={}, updated_at=now)
        tenant.status = back_to
        if before == T.ACTIVE:
            start_job(tenant=tenant, kind=Kind.ACTIVATE, tier=tenant.tier, context=_context(tenant),
                      initiated_by=initiated_by)
    return Tenant.objects.get(id=tenant.id)


def start_deprovision(*, tenant: Tenant, initiated_by=None, now=None) -> ProvisioningJob | None:
    """The grace period passed: the DEPROVISION job (the sweeper's; None if the tenant moved on meanwhile)."""
    now = now or timezone.now()
    with transaction.atomic():
        tenant = _locked(tenant)
        if tenant.status != T.PENDING_DELETION or tenant.deletion_scheduled_at is None \
                or tenant.deletion_scheduled_at > now or _open_job(tenant) is not None:
            return None
        context = _context(tenant)
        if (tenant.deletion_options or {}).get("simulate") is not None:
            context["simulate"] = tenant.deletion_options["simulate"]
        return start_job(tenant=tenant, kind=Kind.DEPROVISION, tier=tenant.tier, context=context,
                         initiated_by=initiated_by)


def deletions_due(*, now=None, limit: int = 100) -> list[Tenant]:
    """PENDING_DELETION tenants whose grace period passed and that have no job open."""
    now = now or timezone.now()
    return list(Tenant.objects.filter(status=T.PENDING_DELETION, deletion_scheduled_at__lte=now)
                .exclude(provisioning_jobs__status__in=["PENDING", "RUNNING", "RETRY_SCHEDULED", "ROLLING_BACK",
                                                        "CANCELLING"])
                .exclude(provisioning_jobs__kind=Kind.DEPROVISION, provisioning_jobs__status="FAILED")
                .order_by("deletion_scheduled_at")[:limit])
