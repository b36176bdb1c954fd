"""The driver interfaces: one small interface per external system.

A driver does one thing to one system and knows nothing about jobs, steps or
retries. Every `ensure_*` is create-or-get by deterministic names (so a
redelivered task repeats nothing) and returns the external ids it touched;
every `delete_*` treats "already gone" as success. Drivers raise the errors of
deploy.errors so the orchestrator can tell transient from permanent.

Two implementations exist for each: the real one (MATIH_INFRA_BACKEND=azure)
and the simulated cloud (deploy.simulated), which records what it "creates".
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class ClusterRef:
    """Where a tenant's namespace lives."""

    name: str
    api_endpoint: str = ""
    credentials_ref: str = ""  # a kubeconfig path or secret name; never the secret itself
    dedicated: bool = False


@dataclass(frozen=True)
class TenantSpec:
    """Everything a driver needs to know about a tenant, computed by the step layer."""

    tenant_id: str
    slug: str
    tier: str
    region: str
    admin_email: str
    namespace: str
    dns_zone: str  # "{slug}.{parent}"
    parent_zone: str
    quota: dict[str, str]  # ResourceQuota hard limits
    limit_range: dict[str, dict[str, str]]  # default, defaultRequest, max, min
    cluster: ClusterRef | None = None
    custom_config: dict = field(default_factory=dict)

    @property
    def hosts(self) -> list[str]:
        return [self.dns_zone, f"api.{self.dns_zone}", f"bi.{self.dns_zone}"]

    @property
    def labels(self) -> dict[str, str]:
        return {
            "app.kubernetes.io/managed-by": "matih",
            "matih.ai/tenant": self.slug,
            "matih.ai/tenant-id": self.tenant_id,
            "matih.ai/tier": self.tier.lower(),
        }


class KubernetesDriver(Protocol):
    def ensure_namespace(self, spec: TenantSpec) -> dict: ...  # namespace + ServiceAccount, Role, RoleBinding
    def delete_namespace(self, spec: TenantSpec) -> None: ...
    def ensure_quotas(self, spec: TenantSpec) -> dict: ...  # ResourceQuota + LimitRange
    def delete_quotas(self, spec: TenantSpec) -> None: ...
    def ensure_network_policies(self, spec: TenantSpec) -> dict: ...
    def delete_network_policies(self, spec: TenantSpec) -> None: ...
    def ensure_ingress(self, spec: TenantSpec) -> dict: ...  # Ingress with cert-manager TLS
    def delete_ingress(self, spec: TenantSpec) -> None: ...
    def ensure_secret(self, spec: TenantSpec, name: str, data: dict[str, str]) -> dict: ...
    def delete_secret(self, spec: TenantSpec, name: str) -> None: ...
    def rollout_status(self, spec: TenantSpec) -> dict[str, bool]: ...  # deployment -> ready
    def manifests(self, spec: TenantSpec) -> list[dict]: ...  # what ensure_* would apply


class HelmDriver(Protocol):
    def install(self, spec: TenantSpec, release: str, chart: str, values: dict) -> dict: ...  # upgrade --install
    def uninstall(self, spec: TenantSpec, release: str) -> None: ...
    def render(self, spec: TenantSpec, release: str, chart: str, values: dict) -> list[dict]: ...


class DnsDriver(Protocol):
    def ensure_zone(self, spec: TenantSpec, ingress_ip: str) -> dict: ...  # zone, NS delegation, A records
    def delete_zone(self, spec: TenantSpec) -> None: ...  # delegation first, then the zone
    def records(self, spec: TenantSpec, ingress_ip: str) -> list[dict]: ...


class TerraformDriver(Protocol):
    def apply(self, spec: TenantSpec, variables: dict) -> dict: ...  # -> outputs
    def destroy(self, spec: TenantSpec, variables: dict) -> None: ...
    def files(self, spec: TenantSpec, variables: dict) -> dict[str, str]: ...  # path -> content


class StateLock(Protocol):
    def acquire(self, key: str, owner: str, ttl_seconds: int) -> bool: ...
    def renew(self, key: str, owner: str, ttl_seconds: int) -> bool: ...
    def release(self, key: str, owner: str) -> None: ...
    def holder(self, key: str) -> str | None: ...


class DatabaseDriver(Protocol):
    def ensure_tenant_database(self, spec: TenantSpec) -> dict: ...  # schema + role (+ database); password
    def drop_tenant_database(self, spec: TenantSpec) -> None: ...


class CredentialsDriver(Protocol):
    def validate_service_principal(self, *, client_id: str, client_secret: str, azure_tenant_id: str,
                                   subscription_id: str) -> dict: ...


class ObservabilityDriver(Protocol):
    def ensure_pipelines(self, spec: TenantSpec) -> dict: ...  # log aggregation and tracing
    def delete_pipelines(self, spec: TenantSpec) -> None: ...


class VerifyDriver(Protocol):
    def check(self, spec: TenantSpec) -> dict: ...  # raises TransientInfraError until healthy


# --- Additions made with the real drivers --------------------------------------------------
# Optional capabilities: the existing interfaces above are unchanged, and the step layer
# needs none of these. The simulated cloud does not have to implement them.

class ConfigMapDriver(Protocol):
    """Offered by the real KubernetesDriver (deploy.kubernetes); the real observability driver uses it."""

    def ensure_config_map(self, spec: TenantSpec, name: str, data: dict[str, str],
                          labels: dict[str, str] | None = None) -> dict: ...
    def delete_config_map(self, spec: TenantSpec, name: str) -> None: ...


class ChartInspector(Protocol):
    """Offered by the real HelmDriver (deploy.helm), for plans and checks that touch no cluster."""

    def lint(self, spec: TenantSpec, chart: str, values: dict | None = None) -> list[str]: ...  # strict findings
    def chart_info(self, chart: str) -> dict: ...  # name, version, default values


class HeldLock(Protocol):
    """Offered by the real StateLock (deploy.locks.RedisStateLock): hold a key while work runs.

    `with lock.held(key, ttl_seconds=..., owner=..., wait=...) as held:` waits up to `wait`
    seconds (then TransientInfraError), renews the TTL every ttl/3 from a background thread,
    releases on exit; `held.lost` turns true if a renewal found the lock gone.
    """

    def held(self, key: str, *, ttl_seconds: float, owner: str | None = None, wait: float = 0.0,
             poll_interval: float = 0.2): ...
