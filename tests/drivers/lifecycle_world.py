"""The stand-ins of a tenant's whole life on the real backend, and what exists in them.

`world` (a fixture) is the real backend built from settings (MATIH_INFRA_BACKEND=azure)
against: the shared cluster's fake API server, the dedicated cluster's (a second fake API
server: the offline Terraform module hands out its address as api_endpoint and in the
kubeconfig), the ARM stub (DNS and the subscription read), the Entra ID stub, real
PostgreSQL, the real terraform binary, and the edge (tests/drivers/fake_ingress.py) that
answers the tenant's hosts the way DNS and the ingresses say. Both fake clusters run their
workloads (every Deployment and StatefulSet is rolled out at once), so a tenant verifies.

`World.snapshot(slug)` is the exact set of what exists, system by system; `inventory_of`
says which inventory resources (kind, name, location) that set amounts to, for comparing
with GET /tenants/{id}/resources.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

from deploy.database import tenant_identifier
from deploy.models import Cluster, ClusterSlot
from deploy.real import real_backend
from deploy.seed import shared_cluster_name
from tests.drivers.fake_ingress import FakeIngressEdge
from tests.drivers.fake_kube import RESOURCES, FakeKubeApi

OFFLINE_MODULE = Path(__file__).parent / "fixtures" / "offline"
SHARED_INGRESS_IP = "203.0.113.10"  # the seeded shared cluster's (deploy.seed)
SHARED_CLUSTER = shared_cluster_name("eastus")
PARENT = "matih.ai"
HELM_RELEASE = "meta.helm.sh/release-name"
HELM_NAMESPACE = "meta.helm.sh/release-namespace"


def dedicated_ingress_ip(slug: str) -> str:
    """The offline module's ingress address for a tenant (its locals.ingress_ip, computed the same way)."""
    return f"198.51.100.{int(hashlib.sha1(slug.encode()).hexdigest()[:2], 16) % 254 + 1}"


@dataclass
class World:
    shared: FakeKubeApi
    dedicated: FakeKubeApi
    arm: object
    entra: object
    edge: FakeIngressEdge
    settings: object
    terraform_dir: Path
    export_dir: Path
    slugs: list = field(default_factory=list)

    @property
    def backend(self):
        return real_backend(self.settings)

    def serve(self, slug: str) -> None:
        """The tenant's hosts dial the edge (as DNS would send them to the ingress), its cluster's IP is routed."""
        self.slugs.append(slug)
        self.edge.clusters[dedicated_ingress_ip(slug)] = self.dedicated
        hosts = [f"{slug}.{PARENT}", f"api.{slug}.{PARENT}", f"bi.{slug}.{PARENT}"]
        self.backend.verify.connect_to.update({host: self.edge.address for host in hosts})

    def drop_databases(self) -> None:
        """What a failed test may have left of its tenants on the PostgreSQL server (shared by every test)."""
        with psycopg.connect(self.settings.DATABASE_URL, autocommit=True) as conn:
            for slug in self.slugs:
                name = tenant_identifier(slug)
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
                if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [name]).fetchone():
                    conn.execute(f'DROP OWNED BY "{name}"')
                    conn.execute(f'DROP ROLE "{name}"')

    # --- what exists --------------------------------------------------------------------------

    def snapshot(self, slug: str) -> dict[str, set]:
        """Everything in every stand-in: the fake clusters and the ARM stub whole (they hold nothing
        else), PostgreSQL's roles, databases and schemas of the tenant, Terraform's working dirs."""
        name = tenant_identifier(slug)
        with psycopg.connect(self.settings.DATABASE_URL, autocommit=True) as conn:
            roles = {r for (r,) in conn.execute("SELECT rolname FROM pg_roles WHERE rolname = %s", [name])}
            databases = {d for (d,) in conn.execute("SELECT datname FROM pg_database WHERE datname = %s", [name])}
            schemas = {("shared", s) for (s,) in conn.execute(
                "SELECT nspname FROM pg_namespace WHERE nspname = %s", [name])}
        if databases:
            with psycopg.connect(self.settings.DATABASE_URL, dbname=name, autocommit=True) as conn:
                schemas |= {("dedicated", s) for (s,) in conn.execute(
                    "SELECT nspname FROM pg_namespace WHERE nspname = %s", [name])}
        with self.arm.lock:
            dns = {("zone", zone) for zone in self.arm.zones} | {key for key in self.arm.record_sets}
        terraform = {str(p.relative_to(self.terraform_dir)) for p in self.terraform_dir.glob("*")} \
            if self.terraform_dir.exists() else set()
        return {
            "shared": set(self.shared.objects), "dedicated": set(self.dedicated.objects), "dns": dns,
            "roles": roles, "databases": databases, "schemas": schemas, "terraform": terraform,
            "exports": {p.name for p in self.export_dir.glob("*")} if self.export_dir.exists() else set(),
        }

    def inventory_of(self, slug: str) -> set[tuple[str, str, str]]:
        """What exists of the tenant, in the inventory's words (deploy/inventory.py).

        A Helm release is one resource however many objects it made (they carry Helm's
        release annotations; its record is the release Secret labelled owner=helm).
        """
        found: set[tuple[str, str, str]] = set()
        for location, cluster in ((SHARED_CLUSTER, self.shared), (f"aks-{slug}", self.dedicated)):
            with cluster.lock:
                objects = dict(cluster.objects)
            for (plural, namespace, name), obj in objects.items():
                found.add(kube_resource(plural, namespace, name, obj, location))
        server = self.backend.database.server
        snapshot = self.snapshot(slug)
        found |= {("DatabaseRole", role, server) for role in snapshot["roles"]}
        found |= {("Database", db, server) for db in snapshot["databases"]}
        shared_database = self.backend.database.database
        found |= {("DatabaseSchema", schema, f"{server}/{shared_database if where == 'shared' else schema}")
                  for where, schema in snapshot["schemas"]}
        zone = f"{slug}.{PARENT}"
        for key in snapshot["dns"]:
            if key == ("zone", zone):
                found.add(("DnsZone", zone, PARENT))
            elif key[:2] == (zone, "A"):
                found.add(("DnsRecord", f"A/{key[2]}", zone))
            elif key == (PARENT, "NS", slug):
                found.add(("DnsDelegation", f"NS/{slug}", PARENT))
        workspace = self.terraform_dir / f"tenant-{slug}"
        if workspace.exists():
            found.add(("TerraformWorkspace", f"tenant-{slug}", str(workspace)))
            found.add(("AksCluster", f"aks-{slug}", "eastus"))  # the offline module's state holds the cluster's outputs
        found |= {("ClusterSlot", s.tenant_key, s.cluster.name)
                  for s in ClusterSlot.objects.filter(tenant_key=slug).select_related("cluster")}
        found |= {("Cluster", c.name, c.region) for c in Cluster.objects.filter(name=f"aks-{slug}")}
        return found


def kube_resource(plural: str, namespace: str, name: str, obj: dict, location: str) -> tuple[str, str, str]:
    meta = obj.get("metadata", {})
    annotations, labels = meta.get("annotations") or {}, meta.get("labels") or {}
    if HELM_RELEASE in annotations:
        return ("HelmRelease", f"{annotations[HELM_NAMESPACE]}/{annotations[HELM_RELEASE]}", location)
    if plural == "secrets" and labels.get("owner") == "helm":
        return ("HelmRelease", f"{namespace}/{labels['name']}", location)
    if plural == "configmaps" and labels.get("matih.ai/pipeline") == "logs":
        return ("LogPipeline", f"{namespace}/{name}", location)
    if plural == "configmaps" and labels.get("matih.ai/pipeline") == "traces":
        return ("TracePipeline", f"{namespace}/{name}", location)
    return (RESOURCES[plural][0], f"{namespace}/{name}" if namespace else name, location)


def added(before: dict[str, set], after: dict[str, set]) -> dict[str, set]:
    return {system: after[system] - before[system] for system in after if after[system] - before[system]}


def dropped(before: dict[str, set], after: dict[str, set]) -> dict[str, set]:
    return {system: before[system] - after[system] for system in before if before[system] - after[system]}


@pytest.fixture
def world(cloud, seeded, tmp_path, settings, monkeypatch):
    """The `cloud` stand-ins (tests/drivers/test_real_backend.py), made into a platform that runs tenants
    (after `seeded`, whose fast settings choose the simulated cloud)."""
    from tests.drivers.test_real_backend import SUB

    shared, arm = cloud["kube"], cloud["arm"]
    shared.run_workloads = True
    dedicated = FakeKubeApi(run_workloads=True).start()
    # The platform's wildcard in the parent zone: a tenant without a zone of its own (FREE) is
    # served by the shared ingress.
    arm.put_record_set(SUB, "rg-matih-dns", PARENT, "A", "*",
                       {"TTL": 300, "ARecords": [{"ipv4Address": SHARED_INGRESS_IP}]})
    arm.subscriptions[SUB] = "Enabled"
    edge = FakeIngressEdge(tmp_path / "edge", arm=arm, clusters={SHARED_INGRESS_IP: shared}).start()
    monkeypatch.setenv("TF_VAR_api_server", dedicated.url)

    settings.MATIH_INFRA_BACKEND = "azure"
    settings.MATIH_HELM_WAIT = False
    settings.MATIH_TERRAFORM_MODULE = str(OFFLINE_MODULE)
    settings.MATIH_TERRAFORM_LOCK_WAIT = 20
    settings.MATIH_VERIFY_CA_BUNDLE = str(edge.ca_path)
    settings.MATIH_VERIFY_TIMEOUT = 2
    settings.MATIH_EXPORT_DIR = str(tmp_path / "exports")
    settings.MATIH_RETRY_BACKOFF = [0.0, 0.0, 0.0]
    settings.MATIH_RETRY_JITTER = 0.0
    settings.MATIH_MAX_RETRIES = 2
    world = World(shared=shared, dedicated=dedicated, arm=arm, entra=cloud["entra"], edge=edge, settings=settings,
                  terraform_dir=Path(settings.MATIH_TERRAFORM_WORKDIR), export_dir=tmp_path / "exports")
    yield world
    world.drop_databases()
    edge.stop()
    dedicated.stop()
