"""The provisioning steps: what each does and what undoes it (the seed's operations).

Several are also steps of other operations (an ENTERPRISE upgrade builds a dedicated
cluster with them); they act on `ctx.spec`, the tenant at the job's tier on the job's cluster.
"""
from __future__ import annotations

from typing import Callable

from django.conf import settings

from billing.models import Tier
from deploy import clusters
from deploy.errors import PermanentInfraError, TransientInfraError
from matih.secrets import decrypt_json
from provisioning.engine import steps_catalog as P
from provisioning.engine.plans import Kind, has_plan
from provisioning.engine.steps.context import (
    DATABASE_SECRET, TERRAFORM_LOCK_TTL, StepContext, StepImplementation, cluster_info, with_resources,
)
from deploy.inventory import resource
from tenants.models import TenantStatus
from tenants.rules import is_valid_slug

RELEASES = {
    P.DEPLOY_CORE_SERVICES: ("core", "core-services"),
    P.DEPLOY_DATA_SERVICES: ("data", "data-services"),
    P.DEPLOY_INGRESS_CONTROLLER: ("ingress", "ingress-controller"),
    P.DEPLOY_MONITORING: ("monitoring", "monitoring"),
}


# --- run ----------------------------------------------------------------------------------------


def validate_input(ctx: StepContext) -> dict:
    tenant = ctx.tenant
    problems = []
    if not is_valid_slug(tenant.slug):
        problems.append(f"slug '{tenant.slug}' is not a DNS label")
    if not has_plan(Kind.PROVISION, tenant.tier):
        problems.append(f"tier '{tenant.tier}' has no plan")
    if tenant.region not in settings.MATIH_REGIONS:
        problems.append(f"region '{tenant.region}' is not served")
    if tenant.tier == Tier.ENTERPRISE and not tenant.service_principal_encrypted:
        problems.append("an ENTERPRISE tenant needs a service principal")
    if problems:
        raise PermanentInfraError("The tenant's input is invalid: " + "; ".join(problems) + ".",
                                  hint="Fix the tenant record, then retry provisioning.")
    return {"slug": tenant.slug, "tier": tenant.tier, "region": tenant.region}


def confirm_tenant_record(ctx: StepContext) -> dict:
    if ctx.tenant.status not in (TenantStatus.PROVISIONING, TenantStatus.PENDING):
        raise PermanentInfraError(f"The tenant is {ctx.tenant.status}, not PROVISIONING.",
                                  hint="Only a tenant being provisioned can be provisioned.")
    return {"tenantId": str(ctx.tenant.id)}


def select_shared_cluster(ctx: StepContext) -> dict:
    cluster = clusters.allocate_shared_slot(region=ctx.tenant.region, tenant_key=ctx.tenant.slug)
    ctx.remember(cluster=cluster_info(cluster, dedicated=False))
    return {"cluster": cluster.name, "resources": [resource("ClusterSlot", ctx.tenant.slug, cluster.name)]}


def validate_service_principal(ctx: StepContext) -> dict:
    principal = decrypt_json(ctx.tenant.service_principal_encrypted)
    return ctx.backend.credentials.validate_service_principal(
        client_id=principal["clientId"], client_secret=principal["clientSecret"],
        azure_tenant_id=principal["azureTenantId"], subscription_id=principal["subscriptionId"],
    ) or {}


def acquire_terraform_lock(ctx: StepContext) -> dict:
    lock = ctx.backend.lock
    if not lock.acquire(ctx.lock_key, ctx.job_id, TERRAFORM_LOCK_TTL):
        raise TransientInfraError(
            f"The Terraform state of tenant-{ctx.tenant.slug} is locked by {lock.holder(ctx.lock_key)}.",
            hint="Another job is applying this tenant's infrastructure; this one waits and retries.",
            retry_after=30,
        )
    return {"lockKey": ctx.lock_key}


def _terraform_variables(ctx: StepContext) -> dict:
    tenant = ctx.tenant
    return {"tenant_slug": tenant.slug, "location": tenant.region, **ctx.spec.custom_config.get("terraform", {})}


def terraform_apply(ctx: StepContext) -> dict:
    with ctx.terraform_lock(acquire=False):
        outputs = ctx.backend.terraform.apply(ctx.spec, _terraform_variables(ctx))
    cluster = clusters.register_dedicated_cluster(
        name=outputs["cluster_name"], region=ctx.tenant.region, api_endpoint=outputs.get("api_endpoint", ""),
        credentials_ref=outputs.get("kubeconfig_ref", f"aks-{ctx.tenant.slug}"),
        ingress_ip=outputs.get("ingress_ip"),
    )
    ctx.remember(cluster=cluster_info(cluster, dedicated=True))
    return {"cluster": cluster.name, "resources": [*outputs.get("resources", []),
                                                   resource("Cluster", cluster.name, cluster.region)],
            "terraformOutputs": {k: v for k, v in outputs.items() if "secret" not in k and k != "resources"}}


def release_terraform_lock(ctx: StepContext) -> dict:
    ctx.backend.lock.release(ctx.lock_key, ctx.job_id)
    return {}


def create_namespace(ctx: StepContext) -> dict:
    return ctx.backend.kubernetes.ensure_namespace(ctx.spec)


def configure_quotas(ctx: StepContext) -> dict:
    return ctx.backend.kubernetes.ensure_quotas(ctx.spec)


def configure_networking(ctx: StepContext) -> dict:
    return ctx.backend.kubernetes.ensure_network_policies(ctx.spec)


def setup_database(ctx: StepContext) -> dict:
    spec = ctx.spec
    created = dict(ctx.backend.database.ensure_tenant_database(spec))
    password = created.pop("password", None)
    secret = None
    if password is not None:
        # The password lives only in the tenant's namespace, never in our database or logs.
        secret = ctx.backend.kubernetes.ensure_secret(spec, DATABASE_SECRET, {
            "username": created.get("role", ""), "password": password,
            "database": created.get("database", ""), "schema": created.get("schema", ""),
        })
    return with_resources({**created, "secret": DATABASE_SECRET}, secret)


def _values(ctx: StepContext, chart: str, spec=None) -> dict:
    spec = spec or ctx.spec
    return {"tenant": {"slug": spec.slug, "tier": spec.tier, "id": spec.tenant_id},
            "hosts": spec.hosts, "custom": spec.custom_config.get(chart, {})}


def release_name(ctx: StepContext, release: str) -> str:
    return f"{ctx.tenant.slug}-{release}"


def install_release(ctx: StepContext, release: str, chart: str, spec=None) -> dict:
    """`helm upgrade --install` of one of the tenant's releases at `spec`'s tier (default: the job's)."""
    spec = spec or ctx.spec
    name = release_name(ctx, release)
    result = ctx.backend.helm.install(spec, name, chart, _values(ctx, chart, spec))
    return {**(result or {}), "release": name, "chart": chart}


def uninstall_release(ctx: StepContext, release: str, spec=None) -> None:
    ctx.backend.helm.uninstall(spec or ctx.spec, release_name(ctx, release))


def _helm_install(step_name: str) -> Callable[[StepContext], dict]:
    def run(ctx: StepContext) -> dict:
        release, chart = RELEASES[step_name]
        return install_release(ctx, release, chart)

    return run


def ingress_ip_of(info: dict | None) -> str:
    """A cluster's ingress address, as the context keeps it (the simulated cloud's when it has none)."""
    return (info or {}).get("ingressIp") or "203.0.113.10"


def create_dns_zone(ctx: StepContext) -> dict:
    return ctx.backend.dns.ensure_zone(ctx.spec, ingress_ip_of(ctx.context.get("cluster")))


def create_tenant_ingress(ctx: StepContext) -> dict:
    return ctx.backend.kubernetes.ensure_ingress(ctx.spec)


def setup_observability(ctx: StepContext) -> dict:
    return ctx.backend.observability.ensure_pipelines(ctx.spec)


def verify_connectivity(ctx: StepContext) -> dict:
    return ctx.backend.verify.check(ctx.spec)


# --- compensate ---------------------------------------------------------------------------------


def release_cluster_slot(ctx: StepContext, outputs: dict) -> None:
    clusters.release_slot(tenant_key=ctx.tenant.slug)


def release_lock(ctx: StepContext, outputs: dict) -> None:
    ctx.backend.lock.release(ctx.lock_key, ctx.job_id)


def terraform_destroy(ctx: StepContext, outputs: dict) -> None:
    with ctx.terraform_lock(acquire=True):
        ctx.backend.terraform.destroy(ctx.spec, _terraform_variables(ctx))
    ctx.backend.lock.release(ctx.lock_key, ctx.job_id)
    clusters.forget_cluster(name=outputs.get("cluster") or f"aks-{ctx.tenant.slug}")


def delete_namespace(ctx: StepContext, outputs: dict) -> None:
    ctx.backend.kubernetes.delete_namespace(ctx.spec)


def delete_quotas(ctx: StepContext, outputs: dict) -> None:
    ctx.backend.kubernetes.delete_quotas(ctx.spec)


def delete_network_policies(ctx: StepContext, outputs: dict) -> None:
    ctx.backend.kubernetes.delete_network_policies(ctx.spec)


def drop_database(ctx: StepContext, outputs: dict) -> None:
    ctx.backend.kubernetes.delete_secret(ctx.spec, DATABASE_SECRET)
    ctx.backend.database.drop_tenant_database(ctx.spec)


def _helm_uninstall(step_name: str) -> Callable[[StepContext, dict], None]:
    def compensate(ctx: StepContext, outputs: dict) -> None:
        uninstall_release(ctx, RELEASES[step_name][0])

    return compensate


def delete_dns_zone(ctx: StepContext, outputs: dict) -> None:
    ctx.backend.dns.delete_zone(ctx.spec)


def delete_ingress(ctx: StepContext, outputs: dict) -> None:
    ctx.backend.kubernetes.delete_ingress(ctx.spec)


def delete_pipelines(ctx: StepContext, outputs: dict) -> None:
    ctx.backend.observability.delete_pipelines(ctx.spec)


STEPS: dict[str, StepImplementation] = {
    P.VALIDATE_INPUT: StepImplementation(validate_input),
    P.CONFIRM_TENANT_RECORD: StepImplementation(confirm_tenant_record),
    P.SELECT_SHARED_CLUSTER: StepImplementation(select_shared_cluster, release_cluster_slot),
    P.VALIDATE_SERVICE_PRINCIPAL: StepImplementation(validate_service_principal),
    P.ACQUIRE_TERRAFORM_LOCK: StepImplementation(acquire_terraform_lock, release_lock),
    P.TERRAFORM_APPLY: StepImplementation(terraform_apply, terraform_destroy),
    P.RELEASE_TERRAFORM_LOCK: StepImplementation(release_terraform_lock),
    P.CREATE_NAMESPACE: StepImplementation(create_namespace, delete_namespace),
    P.CONFIGURE_QUOTAS: StepImplementation(configure_quotas, delete_quotas),
    P.CONFIGURE_NETWORKING: StepImplementation(configure_networking, delete_network_policies),
    P.SETUP_DATABASE: StepImplementation(setup_database, drop_database),
    P.DEPLOY_CORE_SERVICES: StepImplementation(_helm_install(P.DEPLOY_CORE_SERVICES),
                                               _helm_uninstall(P.DEPLOY_CORE_SERVICES)),
    P.DEPLOY_DATA_SERVICES: StepImplementation(_helm_install(P.DEPLOY_DATA_SERVICES),
                                               _helm_uninstall(P.DEPLOY_DATA_SERVICES)),
    P.DEPLOY_INGRESS_CONTROLLER: StepImplementation(_helm_install(P.DEPLOY_INGRESS_CONTROLLER),
                                                    _helm_uninstall(P.DEPLOY_INGRESS_CONTROLLER)),
    P.CREATE_DNS_ZONE: StepImplementation(create_dns_zone, delete_dns_zone),
    P.CREATE_TENANT_INGRESS: StepImplementation(create_tenant_ingress, delete_ingress),
    P.DEPLOY_MONITORING: StepImplementation(_helm_install(P.DEPLOY_MONITORING),
                                            _helm_uninstall(P.DEPLOY_MONITORING)),
    P.SETUP_OBSERVABILITY: StepImplementation(setup_observability, delete_pipelines),
    P.VERIFY_CONNECTIVITY: StepImplementation(verify_connectivity),
}
