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


# --- The tenant's life after provisioning (DESIGN.md section 6) -------------------------------
# Every driver also answers these. Resources are plain dicts, the inventory's shape:
#     {"kind": "Namespace", "name": "tenant-acme", "location": "shared-eastus-1"}
# deploy.inventory holds the rules (and the tenant's deterministic names both backends share):
# - Kubernetes, Helm: `name` is "namespace/name" for namespaced objects (a Helm release is
#   namespaced: "tenant-acme/acme-core"), the bare name for cluster-scoped ones; `location` is
#   the cluster's name: spec.cluster.name, else the driver's default (shared) cluster's name.
# - DNS: DnsZone "acme.matih.ai" at "matih.ai" (its parent); DnsRecord "A/api" at the zone;
#   DnsDelegation "NS/acme" at the parent zone.
# - PostgreSQL: DatabaseRole and Database at "host:port" (server objects); DatabaseSchema at
#   "host:port/database" (the database that holds it).
# - Terraform: TerraformWorkspace / TerraformState "tenant-acme" at the workspace's directory;
#   AksCluster "aks-acme" at its Azure region.
# - Observability: LogPipeline / TracePipeline "tenant-acme/tenant-log-pipeline" at the cluster.
# Every ensure_* (old and new, and terraform.apply, helm.install, kubernetes.block_ingress)
# returns, beside what it returned before, "resources": what it created or found, so the engine
# can record the inventory. `leftovers(spec)` does not trust any record: it asks the system what
# still exists under the tenant's deterministic names and labels, and answers in the same shape.
# The simulated cloud (deploy.simulated) answers every one of these with real state in its rows.
# The cluster inventory (not a driver: deploy.clusters) has its part of the scan too:
# clusters.leftovers(tenant_key=slug, dedicated_cluster="aks-{slug}") -> ClusterSlot, Cluster.


class LifecycleKubernetes(Protocol):
    def scale_workloads(self, spec: TenantSpec, replicas: int) -> dict: ...
    # Scale every Deployment and StatefulSet of the tenant's namespace to `replicas` (0 to
    # suspend). Scaling to 0 records each workload's previous replicas in the annotation
    # matih.ai/replicas-before-suspend (kept if already there: a redelivery does not lose it);
    # returns {"workloads": {name: previous replicas}}.
    def restore_workloads(self, spec: TenantSpec) -> dict: ...
    # Scale each workload back to its annotation's value and remove the annotation;
    # {"workloads": {name: restored replicas}} (empty when nothing was suspended).
    def patch_quota(self, spec: TenantSpec, hard: dict[str, str]) -> dict: ...
    # Merge `hard` into the ResourceQuota's spec.hard (suspension: {"pods": "0"}); returns the
    # previous values of the keys it changed: {"previous": {...}, "hard": {...}}. No quota:
    # PermanentInfraError. ensure_quotas(spec) restores a tier's values.
    def block_ingress(self, spec: TenantSpec) -> dict: ...
    # Make the tenant's Ingress answer 503: a Service `tenant-suspended` with no endpoints and
    # every backend of the Ingress pointed at it; the original rules are kept in the
    # annotation matih.ai/backends-before-suspend. Idempotent. Returns {"exists", "blocked",
    # "resources": [the Service]}; no Ingress: {"exists": False, "blocked": False, "resources": []}.
    # Note: ensure_ingress(spec) rewrites the desired backends, so it unblocks too.
    def unblock_ingress(self, spec: TenantSpec) -> dict: ...
    # Restore the Ingress's rules from the annotation; delete `tenant-suspended`.
    def ingress_state(self, spec: TenantSpec) -> dict: ...
    # {"exists", "blocked", "ingressClass", "hosts", "backends"}: what verification and tests read.
    def workloads(self, spec: TenantSpec) -> dict[str, int]: ...
    # Deployment/StatefulSet name -> spec.replicas.
    def leftovers(self, spec: TenantSpec) -> list[dict]: ...
    # Namespaces labelled matih.ai/tenant={slug} (or named spec.namespace) on spec.cluster, and
    # the cluster-scoped objects labelled for the tenant (IngressClass, ClusterRole,
    # ClusterRoleBinding: the ingress-controller chart's), which deleting the namespace leaves.
    # Also: ensure_network_policies(spec) removes the platform's policies the tier no longer has
    # (PROFESSIONAL -> FREE drops allow-external-to-ingress-controller); it reports them as "pruned".


class LifecycleHelm(Protocol):
    # install() is `upgrade --install`: installing an existing release with new values upgrades it
    # (a new revision); it returns "resources": [{"kind": "HelmRelease", ...}].
    def releases(self, spec: TenantSpec) -> list[str]: ...  # release names in spec.namespace, any state
    def leftovers(self, spec: TenantSpec) -> list[dict]: ...  # {"kind": "HelmRelease", ...}


class LifecycleDns(Protocol):
    # ensure_zone(spec, new_ip) repoints the A records (the ENTERPRISE cut-over); the zone and
    # its delegation are kept. delete_zone removes the delegation, then the zone with its records.
    def zone_state(self, spec: TenantSpec) -> dict: ...
    # {"zone": bool, "delegation": bool, "a": {label: [ips]}} (every A record set in the zone)
    def leftovers(self, spec: TenantSpec) -> list[dict]: ...  # DnsZone and DnsDelegation that still exist


class LifecycleTerraform(Protocol):
    # destroy(spec, variables): `terraform destroy`, then the workspace deleted and its directory
    # (with the state) removed. The driver takes no lock of its own: the step layer holds the
    # one state lock (matih:terraform-state:tenant-{slug}, RedisStateLock) and renews it;
    # Terraform's own state lock (-lock-timeout, MATIH_TERRAFORM_LOCK_WAIT) stays underneath.
    # apply() returns its outputs plus "resources": TerraformWorkspace and AksCluster.
    def leftovers(self, spec: TenantSpec) -> list[dict]: ...
    # TerraformWorkspace (the directory is on disk) / TerraformState (its state still holds
    # resources or outputs)


class LifecycleDatabase(Protocol):
    # ensure_tenant_database(spec, password=None): with `password`, the role gets that one
    # instead of a new one (the ENTERPRISE upgrade's dedicated setup shares the role with the
    # shared schema: a new password would lock out the shared services still running).
    # drop_tenant_database(spec) drops one half: the own database (ENTERPRISE spec) or the
    # shared schema (shared tiers); the role only when the other half does not exist either.
    # So undoing an upgrade (drop_tenant_database(target)) never touches the shared data, and a
    # DEPROVISION of an upgraded tenant that never decommissioned must call drop_shared_schema too.
    def export_tenant_data(self, spec: TenantSpec, directory: str) -> dict: ...
    # pg_dump of the tenant's schema (shared tiers) or database (ENTERPRISE) into
    # `directory`/{slug}-{UTC timestamp}.sql (0600, written under a temporary name, then renamed);
    # returns {"path", "bytes", "sha256", "database", "schema"}. Nothing to export (never set up):
    # {"path": None, "bytes": 0, "sha256": None, "reason"}. A rerun writes a new file.
    def copy_to_dedicated(self, source: TenantSpec, target: TenantSpec) -> dict: ...
    # ENTERPRISE upgrade: the tenant's schema in the shared database (source, a shared tier)
    # copied into its dedicated database (target, ENTERPRISE; made by ensure_tenant_database(target)),
    # then verified table by table: row counts and a checksum of the rows must match, else
    # PermanentInfraError naming the table. Idempotent (a rerun replaces the copy).
    # Returns {"tables": {name: {"rows": n, "checksum": hex}}, "database", "schema"}.
    def verify_copy(self, source: TenantSpec, target: TenantSpec) -> dict: ...
    # The verification alone (the cut-over may check again): the source's fingerprints, or the error.
    def drop_dedicated_copy(self, target: TenantSpec) -> None: ...  # undoes copy_to_dedicated (empty schema)
    def drop_shared_schema(self, source: TenantSpec) -> None: ...
    # After an ENTERPRISE cut-over: the schema left in the shared database, not the role
    # (the dedicated database still belongs to it).
    def table_fingerprints(self, spec: TenantSpec) -> dict: ...  # {table: {"rows", "checksum"}}
    def leftovers(self, spec: TenantSpec) -> list[dict]: ...
    # DatabaseRole, Database, and DatabaseSchema (in the shared database) still present, whatever
    # the spec's tier.
