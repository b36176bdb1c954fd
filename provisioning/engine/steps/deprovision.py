"""The steps of DEPROVISION: the tenant's data exported, everything it has torn down in reverse
dependency order, then a scan that asks every system what is left under the tenant's names.

These run forward only (a failure is retried, never undone). Each says what it removed, for
the inventory; the scan trusts none of that.
"""
from __future__ import annotations

from django.conf import settings

from deploy import clusters
from deploy.errors import TransientInfraError
from deploy.interfaces import TenantSpec
from deploy.models import Cluster
from provisioning.engine import steps_catalog as C
from provisioning.engine.steps.context import DATABASE_SECRET, StepContext, StepImplementation, cluster_ref
from provisioning.engine.steps.provision import RELEASES, _terraform_variables, uninstall_release


def _location(spec: TenantSpec) -> str | None:
    return spec.cluster.name if spec.cluster is not None else None


def _namespaces(ctx: StepContext) -> list[TenantSpec]:
    """The tenant's namespace on its cluster and, if it still has one there, on its former shared cluster."""
    specs = [ctx.spec]
    shared = cluster_ref(ctx.context.get("sharedCluster"))
    if shared is not None and ctx.cluster is not None and shared.name != ctx.cluster.name:
        specs.append(ctx.spec_for(ctx.from_tier, shared))
    return specs


def export_tenant_data(ctx: StepContext) -> dict:
    exported = ctx.backend.database.export_tenant_data(ctx.spec, settings.MATIH_EXPORT_DIR)
    return {key: exported.get(key) for key in ("path", "bytes", "sha256", "database", "schema", "reason")
            if key in exported}


def remove_tenant_ingress(ctx: StepContext) -> dict:
    ctx.backend.kubernetes.delete_ingress(ctx.spec)
    return {"removed": [{"kind": "Ingress", "location": _location(ctx.spec)},
                        {"kind": "Service", "name": f"{ctx.spec.namespace}/tenant-suspended",
                         "location": _location(ctx.spec)}]}


def remove_observability(ctx: StepContext) -> dict:
    ctx.backend.observability.delete_pipelines(ctx.spec)
    return {"removed": [{"kind": "LogPipeline", "location": _location(ctx.spec)},
                        {"kind": "TracePipeline", "location": _location(ctx.spec)}]}


def remove_core_services(ctx: StepContext) -> dict:
    release, _ = RELEASES[C.DEPLOY_CORE_SERVICES]
    uninstall_release(ctx, release)
    location = _location(ctx.spec)
    return {"removed": [{"step": C.DEPLOY_CORE_SERVICES, "location": location},
                        {"step": C.UPGRADE_CORE_SERVICES, "location": location}]}


def drop_tenant_database(ctx: StepContext) -> dict:
    """Its schema (or database) and role; for a tenant moved to ENTERPRISE, the shared schema too."""
    ctx.backend.kubernetes.delete_secret(ctx.spec, DATABASE_SECRET)
    ctx.backend.database.drop_tenant_database(ctx.spec)
    if ctx.tier == "ENTERPRISE":
        ctx.backend.database.drop_shared_schema(ctx.spec)
        ctx.backend.database.drop_tenant_database(ctx.spec)  # the role, now that neither half is left
    return {"removed": [{"kind": "DatabaseSchema"}, {"kind": "Database"}, {"kind": "DatabaseRole"},
                        {"kind": "Secret", "name": f"{ctx.spec.namespace}/{DATABASE_SECRET}"}]}


def delete_tenant_namespace(ctx: StepContext) -> dict:
    """The namespace (everything in it goes with it). On a former shared cluster (a move to ENTERPRISE
    that never decommissioned it) its releases go first: their cluster-scoped objects are not in it."""
    removed = []
    for spec in _namespaces(ctx):
        if spec is not ctx.spec:
            for release in ctx.backend.helm.releases(spec):
                ctx.backend.helm.uninstall(spec, release)
        ctx.backend.kubernetes.delete_namespace(spec)
        removed += [{"location": _location(spec), "prefix": f"{spec.namespace}/"},
                    {"kind": "Namespace", "name": spec.namespace, "location": _location(spec)}]
    return {"removed": removed}


def release_cluster_slot(ctx: StepContext) -> dict:
    clusters.release_slot(tenant_key=ctx.tenant.slug)
    return {"removed": [{"kind": "ClusterSlot"}]}


def destroy_dedicated_cluster(ctx: StepContext) -> dict:
    with ctx.terraform_lock(acquire=True):
        ctx.backend.terraform.destroy(ctx.spec, _terraform_variables(ctx))
    ctx.backend.lock.release(ctx.lock_key, ctx.job_id)
    name = ctx.cluster.name if ctx.cluster is not None else f"aks-{ctx.tenant.slug}"
    clusters.forget_cluster(name=name)
    return {"removed": [{"location": name}, {"kind": "TerraformWorkspace"}, {"kind": "TerraformState"},
                        {"kind": "AksCluster"}, {"kind": "Cluster"}]}


def scan_leftovers(ctx: StepContext) -> dict:
    """Ask every system what still exists under the tenant's names and labels; anything is a failure.

    Where: the tenant's cluster and former shared cluster, every shared cluster of its region
    (a slot released long ago leaves no record of where it was), its DNS names, its database
    role, schemas and database, its Terraform workspace and state, the cluster inventory. A
    dedicated cluster that Terraform destroyed has nothing left inside it: only Terraform and
    the cluster inventory are asked about it.
    """
    found: list[dict] = []
    scanned: list[str] = []
    dedicated = ctx.tier == "ENTERPRISE"
    shared_specs = []
    names = {c.name for c in Cluster.objects.filter(region=ctx.tenant.region, kind=Cluster.Kind.SHARED)}
    for info in (ctx.context.get("sharedCluster"), None if dedicated else ctx.context.get("cluster")):
        if info:
            names.add(info["name"])
    for cluster in Cluster.objects.filter(name__in=sorted(names)):
        ref = cluster_ref({"name": cluster.name, "apiEndpoint": cluster.api_endpoint,
                           "credentialsRef": cluster.credentials_ref})
        shared_specs.append(ctx.spec_for("PROFESSIONAL" if dedicated else ctx.tier, ref))
    for spec in shared_specs:
        found += ctx.backend.kubernetes.leftovers(spec) + ctx.backend.helm.leftovers(spec)
        scanned.append(f"kubernetes and helm on {spec.cluster.name}")
    found += ctx.backend.dns.leftovers(ctx.spec)
    scanned.append(f"dns {ctx.spec.dns_zone}")
    found += ctx.backend.database.leftovers(ctx.spec)
    scanned.append("postgresql")
    if dedicated:
        found += ctx.backend.terraform.leftovers(ctx.spec)
        scanned.append("terraform")
    found += clusters.leftovers(tenant_key=ctx.tenant.slug, dedicated_cluster=f"aks-{ctx.tenant.slug}")
    scanned.append("cluster inventory")
    unique = sorted({(r["kind"], r["name"], r.get("location", "")) for r in found})
    if unique:
        listed = "; ".join(f"{kind} {name}" + (f" at {location}" if location else "") for kind, name, location in unique)
        raise TransientInfraError(
            f"Left after the teardown: {listed}.",
            hint="Remove these (or wait for a deletion that is still finishing), then retry the deprovisioning: "
                 f"POST /api/v1/tenants/{ctx.tenant.id}/provisioning/retry.")
    return {"leftovers": [], "scanned": scanned}


STEPS: dict[str, StepImplementation] = {
    C.EXPORT_TENANT_DATA: StepImplementation(export_tenant_data),
    C.REMOVE_TENANT_INGRESS: StepImplementation(remove_tenant_ingress),
    C.REMOVE_OBSERVABILITY: StepImplementation(remove_observability),
    C.REMOVE_CORE_SERVICES: StepImplementation(remove_core_services),
    C.DROP_TENANT_DATABASE: StepImplementation(drop_tenant_database),
    C.DELETE_TENANT_NAMESPACE: StepImplementation(delete_tenant_namespace),
    C.RELEASE_CLUSTER_SLOT: StepImplementation(release_cluster_slot),
    C.DESTROY_DEDICATED_CLUSTER: StepImplementation(destroy_dedicated_cluster),
    C.SCAN_LEFTOVERS: StepImplementation(scan_leftovers),
}
