"""What a plan does to its tenant when its job ends: each plan names one outcome.

An outcome has two halves, both run inside the transaction that ends the job:
- `completed`: SQL run with the job's completion, in the same statement (common table
  expressions over `j`, the completing job's row: tenant_id, context, tier, from_tier), so
  that the job and the tenant change together or not at all;
- `failed(job, message, cancelled)`: after a rollback (or a forward-only failure), what the
  tenant becomes; it may return a fuller message (what is left), which the job keeps too.
The runner knows none of this: it completes or fails the job and calls the outcome.
"""
from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone

from billing.models import BillingPlan, Subscription
from iam.models import ApiKey, Membership, User
from provisioning.engine.spec import namespace_for
from tenants.models import DeploymentType, Tenant, TenantStatus

TENANT = Tenant._meta.db_table
SUBSCRIPTION = Subscription._meta.db_table
PLAN = BillingPlan._meta.db_table
KEY = ApiKey._meta.db_table
USER = User._meta.db_table
MEMBERSHIP = Membership._meta.db_table
T = TenantStatus


@dataclass(frozen=True)
class Completion:
    ctes: str  # ", name AS (...)" fragments appended after the job's CTE `j`
    params: dict
    message: str  # the job.completed event's message


class Outcome:
    name = ""

    def completed(self, *, slug: str, tier: str, plan=None) -> Completion:
        raise NotImplementedError

    def failed(self, job, message: str, *, cancelled: bool) -> str | None:
        raise NotImplementedError

    def after_completion(self, *, job_id, tenant_id) -> None:
        """After the completion committed (nothing by default)."""


def _tenant(job) -> Tenant:
    return Tenant.objects.select_for_update().get(id=job.tenant_id)


class Provisioned(Outcome):
    """PROVISION: a completed job makes the tenant ACTIVE (only after VERIFY_CONNECTIVITY: it is
    one of the plan's steps, all of which the completion requires); a failed or cancelled one
    makes it FAILED with the job's message."""

    name = "provisioned"

    def completed(self, *, slug: str, tier: str, plan=None) -> Completion:
        return Completion(
            ctes=f""", t AS (
    UPDATE {TENANT} SET status = '{T.ACTIVE}', provisioned_at = now(), error_message = '',
        updated_at = now(), deployment_type = %(deployment_type)s, kubernetes_namespace = %(namespace)s,
        azure_aks_cluster_name = j.context -> 'cluster' ->> 'name', dns_zone = %(dns_zone)s
    FROM j WHERE {TENANT}.id = j.tenant_id
)""",
            params={
                "namespace": namespace_for(slug),
                "deployment_type": DeploymentType.DEDICATED if tier == "ENTERPRISE" else DeploymentType.SHARED,
                "dns_zone": f"{slug}.{settings.MATIH_DNS_PARENT_ZONE}",
            },
            message="Provisioning completed; the tenant is ACTIVE.",
        )

    def failed(self, job, message: str, *, cancelled: bool) -> None:
        Tenant.objects.filter(id=job.tenant_id).update(status=T.FAILED, error_message=message,
                                                       updated_at=timezone.now())


class TierChanged(Outcome):
    """CHANGE_TIER: the tenant ACTIVE at its new tier, and its subscription on the new tier's plan, in
    the statement that completes the job. Undone (failed or cancelled): ACTIVE at its old tier,
    with why in its errorMessage. A failure after an ENTERPRISE cut-over (the shared side's
    decommissioning is forward only): it runs on its dedicated cluster, so ENTERPRISE it is, with
    what the shared side still holds in its errorMessage."""

    name = "tier_changed"

    def completed(self, *, slug: str, tier: str, plan=None) -> Completion:
        return Completion(
            ctes=f""", t AS (
    UPDATE {TENANT} SET tier = j.tier, status = '{T.ACTIVE}', error_message = '', updated_at = now(),
        deployment_type = %(deployment_type)s,
        azure_aks_cluster_name = j.context -> 'cluster' ->> 'name'
    FROM j WHERE {TENANT}.id = j.tenant_id
), b AS (
    UPDATE {SUBSCRIPTION} SET plan_id = (SELECT code FROM {PLAN} WHERE tier = j.tier)
    FROM j WHERE {SUBSCRIPTION}.tenant_id = j.tenant_id
)""",
            params={"deployment_type": DeploymentType.DEDICATED if tier == "ENTERPRISE" else DeploymentType.SHARED},
            message=f"The tier change completed; the tenant is ACTIVE at {tier}.",
        )

    def failed(self, job, message: str, *, cancelled: bool) -> None:
        tenant = _tenant(job)
        if job.plan.forward_only_from and _passed(job, job.plan.forward_only_from):
            tenant.tier = job.tier
            tenant.deployment_type = DeploymentType.DEDICATED
            tenant.azure_aks_cluster_name = (job.context.get("cluster") or {}).get("name")
            Subscription.objects.filter(tenant_id=tenant.id).update(plan=BillingPlan.objects.get(tier=job.tier))
            message = (f"The tenant runs on its {job.tier} cluster; decommissioning its shared resources "
                       f"failed: {message}")
        tenant.status = T.ACTIVE
        tenant.error_message = message
        tenant.save(update_fields=["tier", "status", "error_message", "deployment_type", "azure_aks_cluster_name",
                                   "updated_at"])
        return message


def _passed(job, phase: str) -> bool:
    """Whether the job reached `phase` (every step before it succeeded)."""
    plan = job.plan
    before = plan.phases[:plan.phases.index(phase)]
    return all(step.name in job.succeeded_steps for p in before for step in plan.steps_of(p))


class Suspended(Outcome):
    """SUSPEND: SUSPENDED with suspendedAt and the reason; for a tenant whose deletion asked for the
    suspension, it stays PENDING_DELETION. Undone: ACTIVE again (or still PENDING_DELETION)."""

    name = "suspended"

    def completed(self, *, slug: str, tier: str, plan=None) -> Completion:
        return Completion(
            ctes=f""", t AS (
    UPDATE {TENANT} SET status = CASE WHEN status = '{T.PENDING_DELETION}' THEN status ELSE '{T.SUSPENDED}' END,
        suspended_at = now(), suspension_reason = coalesce(j.context ->> 'reason', ''), error_message = '',
        updated_at = now()
    FROM j WHERE {TENANT}.id = j.tenant_id
)""",
            params={}, message="The tenant is suspended: workloads at zero, its ingress answers 503.")

    def failed(self, job, message: str, *, cancelled: bool) -> None:
        tenant = _tenant(job)
        if tenant.status != T.PENDING_DELETION:
            tenant.status = T.ACTIVE
        tenant.error_message = message
        tenant.save(update_fields=["status", "error_message", "updated_at"])


class Activated(Outcome):
    """ACTIVATE: ACTIVE again (verified). Undone: SUSPENDED still."""

    name = "activated"

    def completed(self, *, slug: str, tier: str, plan=None) -> Completion:
        return Completion(
            ctes=f""", t AS (
    UPDATE {TENANT} SET status = '{T.ACTIVE}', suspended_at = NULL, suspension_reason = '', error_message = '',
        updated_at = now()
    FROM j WHERE {TENANT}.id = j.tenant_id
)""",
            params={}, message="The tenant is ACTIVE again.")

    def failed(self, job, message: str, *, cancelled: bool) -> None:
        Tenant.objects.filter(id=job.tenant_id).update(status=T.SUSPENDED, error_message=message,
                                                       updated_at=timezone.now())


class Deprovisioned(Outcome):
    """DEPROVISION: DELETED, with the statement that completes the job: every key of the tenant
    revoked, its users who belong to no other live tenant deactivated with their emails replaced
    (deleted+{id}@invalid), the admin email too; the slug is free again (uniqueness covers
    tenants that are not DELETED); the record, its jobs and events stay. A failure (forward
    only): still PENDING_DELETION, with what is left in its errorMessage."""

    name = "deprovisioned"

    def completed(self, *, slug: str, tier: str, plan=None) -> Completion:
        return Completion(
            ctes=f""", t AS (
    UPDATE {TENANT} SET status = '{T.DELETED}', deleted_at = now(), error_message = '', updated_at = now(),
        admin_email = 'deleted+' || {TENANT}.id || '@invalid'
    FROM j WHERE {TENANT}.id = j.tenant_id
), k AS (
    UPDATE {KEY} SET revoked_at = now() FROM j WHERE {KEY}.tenant_id = j.tenant_id AND {KEY}.revoked_at IS NULL
), u AS (
    UPDATE {USER} SET is_active = false, email = 'deleted+' || {USER}.id || '@invalid',
        username = 'deleted+' || {USER}.id || '@invalid'
    FROM j
    WHERE {USER}.id IN (SELECT user_id FROM {MEMBERSHIP} m WHERE m.tenant_id = j.tenant_id)
      AND NOT {USER}.is_staff
      AND NOT EXISTS (SELECT 1 FROM {MEMBERSHIP} other JOIN {TENANT} ot ON ot.id = other.tenant_id
                      WHERE other.user_id = {USER}.id AND other.tenant_id <> j.tenant_id
                        AND ot.status <> '{T.DELETED}')
)""",
            params={}, message="The tenant is DELETED: nothing of it is left; its record and history are kept.")

    def failed(self, job, message: str, *, cancelled: bool) -> None:
        # Imported here: the selectors import the engine.
        from provisioning.selectors import resources_of

        left = resources_of(Tenant(id=job.tenant_id))
        if left:
            named = "; ".join(f"{r['kind']} {r['name']}" + (f" at {r['location']}" if r["location"] else "")
                              for r in left)
            message = (f"{message} Still there, by the inventory (GET /api/v1/tenants/{job.tenant_id}/resources): "
                       f"{named}.")
        Tenant.objects.filter(id=job.tenant_id).update(error_message=message, updated_at=timezone.now())
        return message

    def after_completion(self, *, job_id, tenant_id) -> None:
        """The keys the completion revoked: their open live connections close now."""
        from iam.signals import keys_revoked

        keys_revoked.send(sender=ApiKey, key_ids=list(ApiKey.objects.filter(tenant_id=tenant_id)
                                                      .values_list("id", flat=True)))


OUTCOMES: dict[str, Outcome] = {outcome.name: outcome for outcome in (
    Provisioned(), TierChanged(), Suspended(), Activated(), Deprovisioned())}


def outcome_of(plan) -> Outcome:
    return OUTCOMES[plan.outcome]

