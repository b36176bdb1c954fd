"""What each step does and what undoes it.

A step knows which drivers it calls and what it must undo; it knows nothing of
retries, leases or the canvas (provisioning.engine.runner does). Each `run`
returns the outputs to record (the external ids, for rollback); each
`compensate` is idempotent ("already gone" is success).
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

from django.conf import settings

from billing.models import Tier
from deploy import clusters
from deploy.errors import PermanentInfraError, TransientInfraError
from deploy.interfaces import ClusterRef, TenantSpec
from matih.secrets import decrypt_json
from provisioning.engine import heartbeat
from provisioning.engine import steps_catalog as P
from provisioning.engine.plans import Kind, has_plan
from provisioning.engine.spec import tenant_spec
from tenants.models import Tenant, TenantStatus
from tenants.rules import is_valid_slug

TERRAFORM_LOCK_TTL = 600
DATABASE_SECRET = "tenant-database"

RELEASES = {
    P.DEPLOY_CORE_SERVICES: ("core", "core-services"),
    P.DEPLOY_DATA_SERVICES: ("data", "data-services"),
    P.DEPLOY_INGRESS_CONTROLLER: ("ingress", "ingress-controller"),
    P.DEPLOY_MONITORING: ("monitoring", "monitoring"),
}


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
    def cluster(self) -> ClusterRef | None:
        info = {**self.job_context, **self.context_updates}.get("cluster")
        if not info:
            return None
        return ClusterRef(name=info["name"], api_endpoint=info.get("apiEndpoint", ""),
                          credentials_ref=info.get("credentialsRef", ""), dedicated=info.get("dedicated", False))

    @property
    def spec(self) -> TenantSpec:
        tenant = self.tenant
        return tenant_spec(tenant_id=tenant.id, slug=tenant.slug, tier=tenant.tier, region=tenant.region,
                           admin_email=tenant.admin_email, tenant_settings=self.tenant_settings,
                           cluster=self.cluster)

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


def terraform_lock_key(slug: str) -> str:
    return f"matih:terraform-state:tenant-{slug}"


def _cluster_info(cluster, dedicated: bool) -> dict:
    return {"name": cluster.name, "apiEndpoint": cluster.api_endpoint, "credentialsRef": cluster.credentials_ref,
            "dedicated": dedicated, "ingressIp": cluster.ingress_ip}


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
    ctx.remember(cluster=_cluster_info(cluster, dedicated=False))
    return {"cluster": cluster.name}


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
    ctx.remember(cluster=_cluster_info(cluster, dedicated=True))
    return {"cluster": cluster.name, "terraformOutputs": {k: v for k, v in outputs.items() if "secret" not in k}}


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
    if password is not None:
        # The password lives only in the tenant's namespace, never in our database or logs.
        ctx.backend.kubernetes.ensure_secret(spec, DATABASE_SECRET, {
            "username": created.get("role", ""), "password": password,
            "database": created.get("database", ""), "schema": created.get("schema", ""),
        })
    return {**created, "secret": DATABASE_SECRET}


def _values(ctx: StepContext, chart: str) -> dict:
    spec = ctx.spec
    return {"tenant": {"slug": spec.slug, "tier": spec.tier, "id": spec.tenant_id},
            "hosts": spec.hosts, "custom": spec.custom_config.get(chart, {})}


def _helm_install(step_name: str) -> Callable[[StepContext], dict]:
    def run(ctx: StepContext) -> dict:
        release, chart = RELEASES[step_name]
        name = f"{ctx.tenant.slug}-{release}"
        result = ctx.backend.helm.install(ctx.spec, name, chart, _values(ctx, chart))
        return {**(result or {}), "release": name, "chart": chart}

    return run


def create_dns_zone(ctx: StepContext) -> dict:
    cluster_info = ctx.job_context.get("cluster") or {}
    ingress_ip = cluster_info.get("ingressIp") or "203.0.113.10"
    return ctx.backend.dns.ensure_zone(ctx.spec, ingress_ip)


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
        release, _ = RELEASES[step_name]
        ctx.backend.helm.uninstall(ctx.spec, f"{ctx.tenant.slug}-{release}")

    return compensate


def delete_dns_zone(ctx: StepContext, outputs: dict) -> None:
    ctx.backend.dns.delete_zone(ctx.spec)


def delete_ingress(ctx: StepContext, outputs: dict) -> None:
    ctx.backend.kubernetes.delete_ingress(ctx.spec)


def delete_pipelines(ctx: StepContext, outputs: dict) -> None:
    ctx.backend.observability.delete_pipelines(ctx.spec)


@dataclass(frozen=True)
class StepImplementation:
    run: Callable[[StepContext], dict]
    compensate: Callable[[StepContext, dict], None] | None = None


IMPLEMENTATIONS: dict[str, StepImplementation] = {
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

assert set(IMPLEMENTATIONS) == set(P.NOMINAL_SECONDS), "every step of the catalog has an implementation"
assert all(
    (IMPLEMENTATIONS[name].compensate is None) == (P.COMPENSATIONS.get(name) is None) for name in P.NOMINAL_SECONDS
), "the plan's compensation descriptions match the implementations"
