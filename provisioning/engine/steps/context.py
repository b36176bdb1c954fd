"""What a step sees: its tenant, its job's context and plan, the drivers, and the specs it acts on.

A step knows which drivers it calls and what it must undo; it knows nothing of retries,
leases or the canvas (provisioning.engine.runner and rollback do). Each `run` returns the
outputs to record: the external ids it made (for rollback), and under "resources" what it
created or found and under "removed" what it removed (the inventory, recorded in the same
statement as its success). Each `compensate` is idempotent ("already gone" is success); it
returns None (the engine marks what the step made as removed) or outputs of its own.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

from deploy.errors import TransientInfraError
from deploy.interfaces import ClusterRef, TenantSpec
from provisioning.engine import heartbeat
from provisioning.engine.spec import tenant_spec
from tenants.models import Tenant

TERRAFORM_LOCK_TTL = 600
DATABASE_SECRET = "tenant-database"


def terraform_lock_key(slug: str) -> str:
    return f"matih:terraform-state:tenant-{slug}"


def cluster_info(cluster, dedicated: bool) -> dict:
    """A cluster as the job's context keeps it (deploy.models.Cluster -> JSON)."""
    return {"name": cluster.name, "apiEndpoint": cluster.api_endpoint, "credentialsRef": cluster.credentials_ref,
            "dedicated": dedicated, "ingressIp": cluster.ingress_ip}


def cluster_ref(info: dict | None) -> ClusterRef | None:
    if not info:
        return None
    return ClusterRef(name=info["name"], api_endpoint=info.get("apiEndpoint", ""),
                      credentials_ref=info.get("credentialsRef", ""), dedicated=info.get("dedicated", False))


def with_resources(result: dict | None, *more: dict | None) -> dict:
    """`result`, with the "resources" of the other driver results added to its own."""
    merged = dict(result or {})
    resources = list(merged.get("resources") or [])
    for other in more:
        resources += list((other or {}).get("resources") or [])
    merged["resources"] = resources
    return merged


@dataclass
class StepContext:
    job_id: str
    tenant: Tenant
    tenant_settings: dict
    job_context: dict
    backend: object
    attempt: int = 1
    plan: object = None  # the job's plan (provisioning.engine.plans.Plan)
    context_updates: dict = field(default_factory=dict)

    def remember(self, **values) -> None:
        """Keep values in the job's context (committed with the step's success)."""
        self.context_updates.update(values)

    @property
    def context(self) -> dict:
        return {**self.job_context, **self.context_updates}

    # --- where, and at which tier -------------------------------------------------------------------

    @property
    def tier(self) -> str:
        """The tier the job works towards: the plan's (a tier change's target), else the tenant's."""
        return self.plan.tier if self.plan is not None else self.tenant.tier

    @property
    def from_tier(self) -> str:
        """The tier the tenant had when the job began (a tier change's source)."""
        return getattr(self.plan, "from_tier", None) or self.tenant.tier

    @property
    def cluster(self) -> ClusterRef | None:
        """The cluster the job works on now (for an ENTERPRISE upgrade: the new one, once it exists)."""
        return cluster_ref(self.context.get("cluster"))

    @property
    def shared_cluster(self) -> ClusterRef | None:
        """Where the tenant lived before an ENTERPRISE upgrade (the job's context keeps it)."""
        return cluster_ref(self.context.get("sharedCluster")) or self.cluster

    def spec_for(self, tier: str, cluster: ClusterRef | None) -> TenantSpec:
        tenant = self.tenant
        return tenant_spec(tenant_id=tenant.id, slug=tenant.slug, tier=tier, region=tenant.region,
                           admin_email=tenant.admin_email, tenant_settings=self.tenant_settings, cluster=cluster)

    @property
    def spec(self) -> TenantSpec:
        """The tenant at the job's tier, on the job's cluster."""
        return self.spec_for(self.tier, self.cluster)

    @property
    def from_spec(self) -> TenantSpec:
        """The tenant as it was: its former tier, on the cluster it lived on."""
        return self.spec_for(self.from_tier, self.shared_cluster)

    # --- the one lock on the tenant's Terraform state -------------------------------------------------

    @property
    def lock_key(self) -> str:
        return terraform_lock_key(self.tenant.slug)

    @contextmanager
    def terraform_lock(self, *, acquire: bool):
        """Hold the one lock on the tenant's Terraform state while the block runs.

        The job is its owner (a redelivered step of the same job holds it already). `acquire`:
        take it if free (a destroy), else it must be ours already (the apply, after
        ACQUIRE_TERRAFORM_LOCK). Its TTL is renewed by the process's heartbeat, the same
        thread that renews the step's lease: one lock, one renewer.
        """
        lock = self.backend.lock
        held = lock.acquire(self.lock_key, self.job_id, TERRAFORM_LOCK_TTL) if acquire \
            else lock.renew(self.lock_key, self.job_id, TERRAFORM_LOCK_TTL)
        if not held:
            raise TransientInfraError(
                f"The Terraform state of tenant-{self.tenant.slug} is locked by {lock.holder(self.lock_key)}."
                if acquire else "The Terraform state lock was lost before the apply.",
                hint="Another job is applying this tenant's infrastructure; this one waits and retries."
                if acquire else "The job retries from acquiring the lock.",
                retry_after=30 if acquire else None,
            )
        heartbeat.hold_lock(lock, self.lock_key, self.job_id, TERRAFORM_LOCK_TTL)
        try:
            yield
        finally:
            heartbeat.release_lock(self.lock_key, self.job_id)


@dataclass(frozen=True)
class StepImplementation:
    run: Callable[[StepContext], dict]
    compensate: Callable[[StepContext, dict], dict | None] | None = None
