"""The steps of a tier change: the delta between two shared tiers, and the move of a shared tenant
onto a dedicated ENTERPRISE cluster (its data copied and verified, the DNS cut over, then the
shared side decommissioned).

`ctx.spec` is the tenant at the target tier on the job's cluster (the dedicated one, once
Terraform made it); `ctx.from_spec` the tenant as it was, at its former tier on the cluster it
lived on. Every step is undone by putting the former state back, so a failed change leaves the
tenant working at its old tier.
"""
from __future__ import annotations

import secrets

from deploy import clusters
from deploy.errors import PermanentInfraError
from provisioning.engine import steps_catalog as C
from provisioning.engine.steps.context import DATABASE_SECRET, StepContext, StepImplementation, with_resources
from provisioning.engine.steps.provision import RELEASES, ingress_ip_of, install_release, uninstall_release
from tenants.models import TenantStatus


def _release(step: str) -> tuple[str, str]:
    return RELEASES[step]


def cluster_location(ctx: StepContext, spec=None) -> str:
    spec = spec or ctx.spec
    return spec.cluster.name if spec.cluster is not None else ""


# --- the delta --------------------------------------------------------------------------------


def validate_tier_change(ctx: StepContext) -> dict:
    tenant = ctx.tenant
    if tenant.status != TenantStatus.UPGRADING:
        raise PermanentInfraError(f"The tenant is {tenant.status}, not UPGRADING.",
                                  hint="A tier change starts from an ACTIVE tenant; ask for it again.")
    if tenant.tier != ctx.from_tier:
        raise PermanentInfraError(f"The tenant is {tenant.tier} now, not {ctx.from_tier} as the change assumed.",
                                  hint="Ask for the change again from the tenant's current tier.")
    if ctx.cluster is None:
        raise PermanentInfraError("The job does not know which cluster the tenant lives on.",
                                  hint="The tenant's cluster slot is missing; provision the tenant again.")
    return {"fromTier": ctx.from_tier, "toTier": ctx.tier, "cluster": ctx.cluster.name}


def apply_tier_quotas(ctx: StepContext) -> dict:
    """The tier's quotas, and the namespace labelled with the tier (matih.ai/tier)."""
    return with_resources(ctx.backend.kubernetes.ensure_quotas(ctx.spec),
                          ctx.backend.kubernetes.ensure_namespace(ctx.spec))


def restore_tier_quotas(ctx: StepContext, outputs: dict) -> dict:
    return with_resources(ctx.backend.kubernetes.ensure_quotas(ctx.from_spec),
                          ctx.backend.kubernetes.ensure_namespace(ctx.from_spec))


def _tier_networking(ctx: StepContext, spec) -> dict:
    """The tier's NetworkPolicies; those the driver pruned (a tier without them) leave the inventory.

    The drivers report a pruned policy as "NetworkPolicy/{namespace}/{name}" under "pruned";
    the inventory needs it under "removed" in its own shape, or it would list a policy
    that no longer exists (PROFESSIONAL -> FREE drops allow-external-to-ingress-controller).
    """
    result = ctx.backend.kubernetes.ensure_network_policies(spec)
    removed = [{"kind": "NetworkPolicy", "name": pruned.split("/", 1)[1], "location": cluster_location(ctx, spec)}
               for pruned in result.get("pruned") or []]
    return {**result, "removed": removed}


def apply_tier_networking(ctx: StepContext) -> dict:
    return _tier_networking(ctx, ctx.spec)


def restore_tier_networking(ctx: StepContext, outputs: dict) -> dict:
    return _tier_networking(ctx, ctx.from_spec)


def upgrade_core_services(ctx: StepContext) -> dict:
    release, chart = _release(C.DEPLOY_CORE_SERVICES)
    return install_release(ctx, release, chart)


def downgrade_core_services(ctx: StepContext, outputs: dict) -> dict:
    release, chart = _release(C.DEPLOY_CORE_SERVICES)
    return install_release(ctx, release, chart, spec=ctx.from_spec)


def switch_tenant_ingress(ctx: StepContext) -> dict:
    """The Ingress to the target tier's controller (its own, or the platform's shared one)."""
    return ctx.backend.kubernetes.ensure_ingress(ctx.spec)


def switch_ingress_back(ctx: StepContext, outputs: dict) -> dict:
    return ctx.backend.kubernetes.ensure_ingress(ctx.from_spec)


def _remove_release(step: str):
    """Uninstall a release the target tier does not have; undone by installing it at the former tier."""
    release, chart = _release(step)

    def run(ctx: StepContext) -> dict:
        uninstall_release(ctx, release)
        return {"removed": [{"step": step, "location": cluster_location(ctx)},
                            {"kind": "HelmRelease", "name": f"{ctx.spec.namespace}/{ctx.tenant.slug}-{release}",
                             "location": cluster_location(ctx)}]}

    def compensate(ctx: StepContext, outputs: dict) -> dict:
        return install_release(ctx, release, chart, spec=ctx.from_spec)

    return StepImplementation(run, compensate)


def dns_selectors() -> list[dict]:
    return [{"kind": "DnsZone"}, {"kind": "DnsRecord"}, {"kind": "DnsDelegation"}]


def remove_dns_zone(ctx: StepContext) -> dict:
    ctx.backend.dns.delete_zone(ctx.spec)
    return {"removed": dns_selectors()}


def recreate_dns_zone(ctx: StepContext, outputs: dict) -> dict:
    return ctx.backend.dns.ensure_zone(ctx.from_spec, ingress_ip_of(ctx.context.get("sharedCluster")
                                                                    or ctx.context.get("cluster")))


# --- onto a dedicated cluster -----------------------------------------------------------------


def freeze_shared_writes(ctx: StepContext) -> dict:
    """The shared workloads stop (a short outage): nothing writes to the shared schema while it is copied."""
    return ctx.backend.kubernetes.scale_workloads(ctx.from_spec, 0)


def thaw_shared_writes(ctx: StepContext, outputs: dict) -> dict:
    return ctx.backend.kubernetes.restore_workloads(ctx.from_spec)


def setup_dedicated_database(ctx: StepContext) -> dict:
    """The dedicated database, owned by the tenant's role, with one new password for both halves.

    The role is shared with the schema in the shared database, so its password is set once and
    written into both namespaces' Secrets (the shared workloads are frozen now; if the change is
    undone they start again with the Secret that matches the role).
    """
    password = secrets.token_urlsafe(24)
    dedicated = dict(ctx.backend.database.ensure_tenant_database(ctx.spec, password=password))
    shared = dict(ctx.backend.database.ensure_tenant_database(ctx.from_spec, password=password))
    made = []
    for spec, names in ((ctx.spec, dedicated), (ctx.from_spec, shared)):
        names.pop("password", None)
        made.append(ctx.backend.kubernetes.ensure_secret(spec, DATABASE_SECRET, {
            "username": names.get("role", ""), "password": password,
            "database": names.get("database", ""), "schema": names.get("schema", ""),
        }))
    return with_resources({"database": dedicated.get("database"), "schema": dedicated.get("schema"),
                           "role": dedicated.get("role"), "secret": DATABASE_SECRET,
                           "resources": dedicated.get("resources", [])}, *made)


def drop_dedicated_database(ctx: StepContext, outputs: dict) -> None:
    ctx.backend.kubernetes.delete_secret(ctx.spec, DATABASE_SECRET)
    ctx.backend.database.drop_tenant_database(ctx.spec)  # the dedicated half only: the shared schema stays


def copy_tenant_data(ctx: StepContext) -> dict:
    """The shared schema into the dedicated database, verified table by table (rows and checksums)."""
    copied = ctx.backend.database.copy_to_dedicated(ctx.from_spec, ctx.spec)
    return {"tables": copied.get("tables", {}), "database": copied.get("database"), "schema": copied.get("schema")}


def empty_dedicated_copy(ctx: StepContext, outputs: dict) -> dict:
    ctx.backend.database.drop_dedicated_copy(ctx.spec)
    return {}


def cut_over_dns(ctx: StepContext) -> dict:
    """The tenant's names to the dedicated cluster's ingress (the zone is made if the tier had none)."""
    result = ctx.backend.dns.ensure_zone(ctx.spec, ingress_ip_of(ctx.context.get("cluster")))
    return {**result, "ingressIp": ingress_ip_of(ctx.context.get("cluster"))}


def cut_back_dns(ctx: StepContext, outputs: dict) -> dict | None:
    """Back to the shared ingress: the records repointed, or the zone removed if the former tier had none."""
    if ctx.from_tier == "FREE":
        ctx.backend.dns.delete_zone(ctx.spec)
        return {"removed": dns_selectors()}
    return ctx.backend.dns.ensure_zone(ctx.from_spec, ingress_ip_of(ctx.context.get("sharedCluster")))


# --- the shared side, once the cut-over is verified (forward only) ------------------------------


def remove_shared_namespace(ctx: StepContext) -> dict:
    """The shared tier's Helm releases uninstalled, then the shared namespace deleted with the rest (ingress,
    secrets, pipelines).

    The releases go first: a chart's cluster-scoped objects (the PROFESSIONAL ingress controller's
    IngressClass, ClusterRole and ClusterRoleBinding) are not in the namespace, and deleting it
    also deletes Helm's record of the release, leaving nothing that would uninstall them.
    """
    spec = ctx.from_spec
    for release in ctx.backend.helm.releases(spec):
        ctx.backend.helm.uninstall(spec, release)
    ctx.backend.kubernetes.delete_namespace(spec)
    location = cluster_location(ctx, spec)
    return {"removed": [{"location": location, "prefix": f"{spec.namespace}/"},
                        {"kind": "Namespace", "name": spec.namespace, "location": location},
                        {"kind": "LogPipeline", "location": location}, {"kind": "TracePipeline", "location": location}]}


def drop_shared_schema(ctx: StepContext) -> dict:
    ctx.backend.database.drop_shared_schema(ctx.from_spec)
    # The shared schema is the one the provisioning made; the dedicated one stays.
    return {"removed": [{"kind": "DatabaseSchema", "step": C.SETUP_DATABASE}]}


def release_shared_slot(ctx: StepContext) -> dict:
    clusters.release_slot(tenant_key=ctx.tenant.slug)
    return {"removed": [{"kind": "ClusterSlot"}]}


STEPS: dict[str, StepImplementation] = {
    C.VALIDATE_TIER_CHANGE: StepImplementation(validate_tier_change),
    C.APPLY_TIER_QUOTAS: StepImplementation(apply_tier_quotas, restore_tier_quotas),
    C.APPLY_TIER_NETWORKING: StepImplementation(apply_tier_networking, restore_tier_networking),
    C.UPGRADE_CORE_SERVICES: StepImplementation(upgrade_core_services, downgrade_core_services),
    C.SWITCH_TENANT_INGRESS: StepImplementation(switch_tenant_ingress, switch_ingress_back),
    C.REMOVE_DATA_SERVICES: _remove_release(C.DEPLOY_DATA_SERVICES),
    C.REMOVE_INGRESS_CONTROLLER: _remove_release(C.DEPLOY_INGRESS_CONTROLLER),
    C.REMOVE_MONITORING: _remove_release(C.DEPLOY_MONITORING),
    C.REMOVE_DNS_ZONE: StepImplementation(remove_dns_zone, recreate_dns_zone),
    C.FREEZE_SHARED_WRITES: StepImplementation(freeze_shared_writes, thaw_shared_writes),
    C.SETUP_DEDICATED_DATABASE: StepImplementation(setup_dedicated_database, drop_dedicated_database),
    C.COPY_TENANT_DATA: StepImplementation(copy_tenant_data, empty_dedicated_copy),
    C.CUT_OVER_DNS: StepImplementation(cut_over_dns, cut_back_dns),
    C.REMOVE_SHARED_NAMESPACE: StepImplementation(remove_shared_namespace),
    C.DROP_SHARED_SCHEMA: StepImplementation(drop_shared_schema),
    C.RELEASE_SHARED_SLOT: StepImplementation(release_shared_slot),
}
