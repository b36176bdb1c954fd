"""What a tenant has in the stand-ins at each tier, spelt out: the exact sets the lifecycle tests expect.

Objects of the fake API servers are (plural, namespace, name), "" for cluster-scoped ones;
DNS record sets are (zone, TYPE, name), zones ("zone", name) (lifecycle_world.World.snapshot).
Each Helm release is what its chart renders (deploy/charts) plus Helm's record of each
revision kept (a Secret sh.helm.release.v1.{release}.v{n}).
"""
from __future__ import annotations

from tests.drivers.lifecycle_world import PARENT

# What the platform's drivers make in the tenant's namespace (deploy/kubernetes.py, observability.py).
PLATFORM = {("serviceaccounts", "tenant-admin"), ("roles", "tenant-admin"), ("rolebindings", "tenant-admin"),
            ("resourcequotas", "tenant-quota"), ("limitranges", "tenant-limits"), ("ingresses", "tenant-ingress"),
            ("secrets", "tenant-database"), ("configmaps", "tenant-log-pipeline"),
            ("configmaps", "tenant-trace-pipeline"),
            ("networkpolicies", "default-deny-ingress"), ("networkpolicies", "allow-same-namespace"),
            ("networkpolicies", "allow-from-ingress-controller"), ("networkpolicies", "allow-from-monitoring")}
EXTERNAL_POLICY = {("networkpolicies", "allow-external-to-ingress-controller")}
SUSPENDED_SERVICE = {("services", "tenant-suspended")}
# The charts' objects in the namespace. The core services run one replica each at FREE, more above,
# and a PodDisruptionBudget each where there is more than one (core-services/templates/pdb.yaml).
CORE_SERVICES = ("core-api", "core-bi", "core-web")
CORE = {("configmaps", "core-config"), ("serviceaccounts", "core-services"),
        *{(plural, name) for plural in ("deployments", "services") for name in CORE_SERVICES}}
CORE_PDBS = {("poddisruptionbudgets", name) for name in CORE_SERVICES}
DATA = {("deployments", "data-query"), ("statefulsets", "data-cache"), ("services", "data-cache"),
        ("services", "data-query")}
INGRESS_CONTROLLER = {(plural, "ingress-controller")
                      for plural in ("deployments", "services", "serviceaccounts", "roles", "rolebindings")}
MONITORING = {("configmaps", "tenant-grafana-dashboard"), ("configmaps", "tenant-prometheus-rules")}
CHARTS = {"core": CORE, "data": DATA, "ingress": INGRESS_CONTROLLER, "monitoring": MONITORING}

SHARED_TIER_RELEASES = {"FREE": ("core",), "PROFESSIONAL": ("core", "data", "ingress", "monitoring")}
ALL_RELEASES = ("core", "data", "ingress", "monitoring")


def namespace_of(slug: str) -> str:
    return f"tenant-{slug}"


def in_namespace(slug: str, pairs) -> set[tuple[str, str, str]]:
    return {(plural, namespace_of(slug), name) for plural, name in pairs}


def ingress_controller_cluster_objects(slug: str) -> set[tuple[str, str, str]]:
    """What the ingress-controller chart makes outside the namespace (deleting the namespace leaves them)."""
    ns = namespace_of(slug)
    return {("clusterroles", "", f"matih-ingress-{ns}"), ("clusterrolebindings", "", f"matih-ingress-{ns}"),
            ("ingressclasses", "", ns)}


def release(slug: str, name: str, revisions=(1,), tier: str = "PROFESSIONAL") -> set[tuple[str, str, str]]:
    """A release's objects at `tier` and Helm's record of each revision kept."""
    objects = in_namespace(slug, CHARTS[name]) | {
        ("secrets", namespace_of(slug), f"sh.helm.release.v1.{slug}-{name}.v{n}") for n in revisions}
    if name == "ingress":
        objects |= ingress_controller_cluster_objects(slug)
    if name == "core" and tier != "FREE":
        objects |= in_namespace(slug, CORE_PDBS)
    return objects


def tenant_cluster(slug: str, tier: str, *, revisions: dict | None = None) -> set[tuple[str, str, str]]:
    """Everything a tenant at `tier` has in its cluster (ENTERPRISE: every release, like PROFESSIONAL)."""
    revisions = revisions or {}
    releases = SHARED_TIER_RELEASES.get(tier, ALL_RELEASES)
    objects = {("namespaces", "", namespace_of(slug))} | in_namespace(slug, PLATFORM)
    if tier != "FREE":
        objects |= in_namespace(slug, EXTERNAL_POLICY)
    for name in releases:
        objects |= release(slug, name, revisions.get(name, (1,)), tier)
    return objects


PLATFORM_DNS = {("zone", PARENT), (PARENT, "NS", "@"), (PARENT, "SOA", "@"), (PARENT, "A", "*")}


def tenant_dns(slug: str) -> set[tuple[str, str, str]]:
    """The tenant's child zone (its NS and SOA, the A records) and the delegation in the parent."""
    zone = f"{slug}.{PARENT}"
    return ({("zone", zone), (zone, "NS", "@"), (zone, "SOA", "@"), (PARENT, "NS", slug)}
            | {(zone, "A", label) for label in ("@", "*", "api", "bi")})
