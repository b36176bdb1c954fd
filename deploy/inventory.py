"""The inventory's words, shared by the real drivers and the simulated cloud.

A resource is a plain dict, `{"kind", "name", "location"}`: what every `ensure_*`
returns under "resources" and what every `leftovers(spec)` returns, so the
engine can record the one and compare it with the other on either backend.

- Kubernetes and Helm: `name` is `namespace/name` for namespaced objects (a
  Helm release is namespaced), the bare name for cluster-scoped ones;
  `location` is the cluster's name.
- DNS: a zone lives in its parent zone; a record set (`A/api`, `NS/acme`) in the
  zone that holds it.
- PostgreSQL: roles and databases live on the server (`host:port`), a schema in
  its database (`host:port/database`).
- Terraform: the tenant's working directory; an AKS cluster in its Azure region.

The tenant's deterministic names that both implementations must agree on live
here too, so the simulated cloud and the real drivers cannot drift apart.
"""
from __future__ import annotations

from deploy.interfaces import ClusterRef, TenantSpec

QUOTA = "tenant-quota"
LIMITS = "tenant-limits"
INGRESS = "tenant-ingress"
ADMIN = "tenant-admin"
SUSPENDED_SERVICE = "tenant-suspended"
LOG_PIPELINE = "tenant-log-pipeline"
TRACE_PIPELINE = "tenant-trace-pipeline"
# Suspension keeps what it changed in annotations, so a redelivered step (or the
# activation, in another job) finds the values to restore on the object itself.
REPLICAS_BEFORE_SUSPEND = "matih.ai/replicas-before-suspend"
BACKENDS_BEFORE_SUSPEND = "matih.ai/backends-before-suspend"
TENANT_LABEL = "matih.ai/tenant"
MANAGED_BY = "app.kubernetes.io/managed-by"

# The NetworkPolicies of every tier, and the one that tiers with their own ingress controller add.
BASE_NETWORK_POLICIES = ("default-deny-ingress", "allow-same-namespace", "allow-from-ingress-controller",
                         "allow-from-monitoring")
EXTERNAL_INGRESS_POLICY = "allow-external-to-ingress-controller"
DNS_A_LABELS = ("@", "*", "api", "bi")


def resource(kind: str, name: str, location: str) -> dict:
    return {"kind": kind, "name": name, "location": location}


def namespaced(spec: TenantSpec, name: str) -> str:
    return f"{spec.namespace}/{name}"


def cluster_location(spec: TenantSpec, default_cluster: ClusterRef | None) -> str:
    """The cluster a spec's objects live on: its own, else the driver's default (the shared one)."""
    if spec.cluster is not None and spec.cluster.name:
        return spec.cluster.name
    return default_cluster.name if default_cluster is not None else ""


def has_own_ingress_controller(spec: TenantSpec) -> bool:
    """FREE tenants share the platform's controller; the others run their own."""
    return spec.tier.upper() != "FREE"


def ingress_class(spec: TenantSpec, shared_ingress_class: str) -> str:
    if spec.custom_config.get("ingress_class"):
        return spec.custom_config["ingress_class"]
    return spec.namespace if has_own_ingress_controller(spec) else shared_ingress_class


def network_policy_names(spec: TenantSpec) -> list[str]:
    names = list(BASE_NETWORK_POLICIES)
    if has_own_ingress_controller(spec):
        names.append(EXTERNAL_INGRESS_POLICY)
    return names


def delegation_label(spec: TenantSpec) -> str:
    """The NS record set's name in the parent zone: `acme` for acme.matih.ai under matih.ai."""
    suffix = "." + spec.parent_zone
    if not spec.dns_zone.endswith(suffix):
        from deploy.errors import PermanentInfraError

        raise PermanentInfraError(f"zone {spec.dns_zone} is not a child of {spec.parent_zone}")
    return spec.dns_zone[: -len(suffix)]


def dns_resources(spec: TenantSpec) -> list[dict]:
    """What ensure_zone makes: the zone, its A record sets, the delegation in the parent."""
    return ([resource("DnsZone", spec.dns_zone, spec.parent_zone)]
            + [resource("DnsRecord", f"A/{label}", spec.dns_zone) for label in DNS_A_LABELS]
            + [resource("DnsDelegation", f"NS/{delegation_label(spec)}", spec.parent_zone)])
