"""The simulated cloud: every driver interface, in-process.

It records each resource it "creates" as a SimulatedResource row (create-or-get
by deterministic names, like the real drivers), so a rollback can be checked:
after a compensation nothing of the tenant is left. Each step's work takes the
step's nominal duration times the time scale, and fails on request:

- `faults` (from the registration's `simulate`): {"STEP": {"mode": "transient"|"permanent", "times": N}}
  a transient fault fails the step's first N attempts; a permanent one always.
- `fault_rate` (MATIH_SIM_FAULT_RATE): a random transient failure of any step.
"""
from __future__ import annotations

import random
import secrets
import time

from deploy.errors import PermanentInfraError, TransientInfraError
from deploy.interfaces import TenantSpec
from deploy.models import SimulatedResource

SIMULATED_INGRESS_IP = "203.0.113.10"  # TEST-NET-3: never routable


def _ensure_all(owner: str, resources: list[tuple[str, str, dict | None]]) -> list[dict]:
    """Create-or-get by (kind, name), in one statement (INSERT ... ON CONFLICT DO NOTHING)."""
    SimulatedResource.objects.bulk_create(
        [SimulatedResource(kind=kind, name=name, owner=owner, data=data or {}) for kind, name, data in resources],
        ignore_conflicts=True,
    )
    return [{"kind": kind, "name": name} for kind, name, _ in resources]


def _ensure(kind: str, name: str, owner: str, data: dict | None = None) -> dict:
    return _ensure_all(owner, [(kind, name, data)])[0]


def _delete(kind: str, name: str) -> None:
    SimulatedResource.objects.filter(kind=kind, name=name).delete()


def _delete_prefix(kind: str, prefix: str) -> None:
    SimulatedResource.objects.filter(kind=kind, name__startswith=prefix).delete()


class SimulatedCloud:
    name = "simulated"

    def __init__(self, *, time_scale: float, faults: dict | None = None, fault_rate: float = 0.0):
        self.time_scale = time_scale
        self.faults = faults or {}
        self.fault_rate = fault_rate
        # One object plays every driver.
        self.kubernetes = self.helm = self.dns = self.terraform = self
        self.lock = self.database = self.credentials = self.observability = self.verify = self

    # --- the step's time and faults ------------------------------------------------------
    def before_step(self, step: str, attempt: int, nominal_seconds: float) -> None:
        fault = self.faults.get(step)
        if fault is not None:
            if fault.get("mode") == "permanent":
                raise PermanentInfraError(
                    f"Simulated permanent failure of {step}.",
                    provider_message="simulated: the provider refused the request",
                    hint="Remove the fault from the registration's 'simulate' block.",
                )
            if attempt <= int(fault.get("times", 1)):
                raise TransientInfraError(
                    f"Simulated transient failure of {step} (attempt {attempt}).",
                    provider_message="simulated: 503 Service Unavailable",
                    hint="It clears on its own after the configured number of attempts.",
                )
        if self.fault_rate and random.random() < self.fault_rate:
            raise TransientInfraError(
                f"Simulated random failure of {step} (MATIH_SIM_FAULT_RATE).",
                provider_message="simulated: 500 Internal Server Error",
            )
        if self.time_scale > 0:
            time.sleep(nominal_seconds * self.time_scale)

    # --- kubernetes --------------------------------------------------------------------------
    def ensure_namespace(self, spec: TenantSpec) -> dict:
        return _ensure_all(spec.slug, [
            ("Namespace", spec.namespace, {"labels": spec.labels}),
            ("ServiceAccount", f"{spec.namespace}/tenant-admin", None),
            ("RoleBinding", f"{spec.namespace}/tenant-admin", None),
        ])[0]

    def delete_namespace(self, spec: TenantSpec) -> None:
        # Deleting a namespace deletes everything in it, as in Kubernetes.
        SimulatedResource.objects.filter(name__startswith=f"{spec.namespace}/").delete()
        _delete("Namespace", spec.namespace)

    def ensure_quotas(self, spec: TenantSpec) -> dict:
        return _ensure_all(spec.slug, [
            ("ResourceQuota", f"{spec.namespace}/tenant-quota", spec.quota),
            ("LimitRange", f"{spec.namespace}/tenant-limits", spec.limit_range),
        ])[0]

    def delete_quotas(self, spec: TenantSpec) -> None:
        _delete("ResourceQuota", f"{spec.namespace}/tenant-quota")
        _delete("LimitRange", f"{spec.namespace}/tenant-limits")

    def ensure_network_policies(self, spec: TenantSpec) -> dict:
        names = ["default-deny", "allow-same-namespace", "allow-ingress-controller", "allow-monitoring"]
        _ensure_all(spec.slug, [("NetworkPolicy", f"{spec.namespace}/{name}", None) for name in names])
        return {"networkPolicies": names}

    def delete_network_policies(self, spec: TenantSpec) -> None:
        _delete_prefix("NetworkPolicy", f"{spec.namespace}/")

    def ensure_ingress(self, spec: TenantSpec) -> dict:
        return _ensure("Ingress", f"{spec.namespace}/tenant-ingress", spec.slug, {"hosts": spec.hosts})

    def delete_ingress(self, spec: TenantSpec) -> None:
        _delete("Ingress", f"{spec.namespace}/tenant-ingress")

    def ensure_secret(self, spec: TenantSpec, name: str, data: dict[str, str]) -> dict:
        # The value is not recorded: the simulated cloud keeps no secrets either.
        return _ensure("Secret", f"{spec.namespace}/{name}", spec.slug, {"keys": sorted(data)})

    def delete_secret(self, spec: TenantSpec, name: str) -> None:
        _delete("Secret", f"{spec.namespace}/{name}")

    def rollout_status(self, spec: TenantSpec) -> dict[str, bool]:
        releases = SimulatedResource.objects.filter(kind="HelmRelease", owner=spec.slug)
        return {release.name: True for release in releases}

    def manifests(self, spec: TenantSpec) -> list[dict]:
        return []

    # --- helm ------------------------------------------------------------------------------------
    def install(self, spec: TenantSpec, release: str, chart: str, values: dict) -> dict:
        return _ensure("HelmRelease", f"{spec.namespace}/{release}", spec.slug, {"chart": chart})

    def uninstall(self, spec: TenantSpec, release: str) -> None:
        _delete("HelmRelease", f"{spec.namespace}/{release}")

    def render(self, spec: TenantSpec, release: str, chart: str, values: dict) -> list[dict]:
        return []

    # --- dns ---------------------------------------------------------------------------------------
    def ensure_zone(self, spec: TenantSpec, ingress_ip: str) -> dict:
        zone = _ensure_all(spec.slug, [
            ("DnsZone", spec.dns_zone, None),
            ("DnsDelegation", f"{spec.parent_zone}/NS/{spec.slug}", None),
            *[("DnsRecord", f"{spec.dns_zone}/A/{label}", {"ip": ingress_ip}) for label in ("@", "*", "api", "bi")],
        ])[0]
        return {**zone, "nameServers": [f"ns{i}-sim.azure-dns.example" for i in (1, 2, 3, 4)]}

    def delete_zone(self, spec: TenantSpec) -> None:
        _delete("DnsDelegation", f"{spec.parent_zone}/NS/{spec.slug}")
        _delete_prefix("DnsRecord", f"{spec.dns_zone}/")
        _delete("DnsZone", spec.dns_zone)

    def records(self, spec: TenantSpec, ingress_ip: str) -> list[dict]:
        return []

    # --- terraform and its lock ------------------------------------------------------------------------
    def apply(self, spec: TenantSpec, variables: dict) -> dict:
        name = f"aks-{spec.slug}"
        _ensure_all(spec.slug, [("TerraformWorkspace", f"tenant-{spec.slug}", {"variables": sorted(variables)}),
                                ("AksCluster", name, {"region": spec.region})])
        return {
            "cluster_name": name,
            "api_endpoint": f"https://{name}.hcp.{spec.region}.azmk8s.example:443",
            "resource_group": f"rg-matih-{spec.slug}",
            "ingress_ip": SIMULATED_INGRESS_IP,
        }

    def destroy(self, spec: TenantSpec, variables: dict) -> None:
        _delete("AksCluster", f"aks-{spec.slug}")
        _delete("TerraformWorkspace", f"tenant-{spec.slug}")

    def files(self, spec: TenantSpec, variables: dict) -> dict[str, str]:
        return {}

    def acquire(self, key: str, owner: str, ttl_seconds: int) -> bool:
        resource, created = SimulatedResource.objects.get_or_create(
            kind="StateLock", name=key, defaults={"owner": owner}
        )
        return created or resource.owner == owner

    def renew(self, key: str, owner: str, ttl_seconds: int) -> bool:
        return SimulatedResource.objects.filter(kind="StateLock", name=key, owner=owner).exists()

    def release(self, key: str, owner: str) -> None:
        SimulatedResource.objects.filter(kind="StateLock", name=key, owner=owner).delete()

    def holder(self, key: str) -> str | None:
        return SimulatedResource.objects.filter(kind="StateLock", name=key).values_list("owner", flat=True).first()

    # --- database ----------------------------------------------------------------------------------------
    def ensure_tenant_database(self, spec: TenantSpec) -> dict:
        schema = f"tenant_{spec.slug.replace('-', '_')}"
        _ensure_all(spec.slug, [("DatabaseRole", schema, None), ("DatabaseSchema", schema, None)])
        return {"schema": schema, "role": schema, "database": "matih_data", "password": secrets.token_urlsafe(24)}

    def drop_tenant_database(self, spec: TenantSpec) -> None:
        schema = f"tenant_{spec.slug.replace('-', '_')}"
        _delete("DatabaseSchema", schema)
        _delete("DatabaseRole", schema)

    # --- credentials, observability, verification -----------------------------------------------------------
    def validate_service_principal(self, *, client_id: str, client_secret: str, azure_tenant_id: str,
                                   subscription_id: str) -> dict:
        if not client_secret:
            raise PermanentInfraError("The service principal has no client secret.",
                                      hint="Register the tenant again with servicePrincipal.clientSecret.")
        return {"clientId": client_id, "subscriptionId": subscription_id}

    def ensure_pipelines(self, spec: TenantSpec) -> dict:
        return _ensure_all(spec.slug, [("LogPipeline", f"{spec.namespace}/logs", None),
                                       ("TracePipeline", f"{spec.namespace}/traces", None)])[1]

    def delete_pipelines(self, spec: TenantSpec) -> None:
        _delete("LogPipeline", f"{spec.namespace}/logs")
        _delete("TracePipeline", f"{spec.namespace}/traces")

    def check(self, spec: TenantSpec) -> dict:
        if not SimulatedResource.objects.filter(kind="Namespace", name=spec.namespace).exists():
            raise TransientInfraError(f"Namespace {spec.namespace} does not exist yet.")
        return {"endpoints": [f"https://{host}/healthz" for host in spec.hosts], "healthy": True}
