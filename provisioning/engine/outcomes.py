"""What a plan does to its tenant when its job ends: each plan names one outcome.

An outcome has two halves, both run inside the transaction that ends the job:
- `completed`: SQL run with the job's completion, in the same statement (common table
  expressions over `j`, the completing job's row: tenant_id, context), so that the job and
  the tenant change together or not at all;
- `failed(job, message, cancelled)`: after a rollback (or a forward-only failure), what the
  tenant becomes.
The runner knows none of this: it completes or fails the job and calls the outcome.
"""
from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone

from provisioning.engine.spec import namespace_for
from tenants.models import DeploymentType, Tenant, TenantStatus

TENANT_TABLE = Tenant._meta.db_table


@dataclass(frozen=True)
class Completion:
    ctes: str  # ", name AS (...)" fragments appended after the job's CTE `j`
    params: dict
    message: str  # the job.completed event's message


class Outcome:
    name = ""

    def completed(self, *, slug: str, tier: str) -> Completion:
        raise NotImplementedError

    def failed(self, job, message: str, *, cancelled: bool) -> None:
        raise NotImplementedError


class Provisioned(Outcome):
    """PROVISION: a completed job makes the tenant ACTIVE (only after VERIFY_CONNECTIVITY: it is
    one of the plan's steps, all of which the completion requires); a failed or cancelled one
    makes it FAILED with the job's message."""

    name = "provisioned"

    def completed(self, *, slug: str, tier: str) -> Completion:
        return Completion(
            ctes=f""", t AS (
    UPDATE {TENANT_TABLE} SET status = '{TenantStatus.ACTIVE}', provisioned_at = now(), error_message = '',
        updated_at = now(), deployment_type = %(deployment_type)s, kubernetes_namespace = %(namespace)s,
        azure_aks_cluster_name = j.context -> 'cluster' ->> 'name', dns_zone = %(dns_zone)s
    FROM j WHERE {TENANT_TABLE}.id = j.tenant_id
)""",
            params={
                "namespace": namespace_for(slug),
                "deployment_type": DeploymentType.DEDICATED if tier == "ENTERPRISE" else DeploymentType.SHARED,
                "dns_zone": f"{slug}.{settings.MATIH_DNS_PARENT_ZONE}",
            },
            message="Provisioning completed; the tenant is ACTIVE.",
        )

    def failed(self, job, message: str, *, cancelled: bool) -> None:
        Tenant.objects.filter(id=job.tenant_id).update(status=TenantStatus.FAILED, error_message=message,
                                                       updated_at=timezone.now())


OUTCOMES: dict[str, Outcome] = {outcome.name: outcome for outcome in (Provisioned(),)}


def outcome_of(plan) -> Outcome:
    return OUTCOMES[plan.outcome]
