"""Each operation of a tenant's life through the engine on the real backend against the local stand-ins.

The stand-ins (tests/drivers/lifecycle_world.py): the shared cluster's and the dedicated
cluster's fake API servers (strict validation; their workloads roll out), the ARM stub (DNS),
the Entra ID stub, the real terraform binary on the offline module, real PostgreSQL, and the
edge that answers the tenant's hosts as DNS and the Ingresses say. The engine's phase tasks
run in this process (tests/engine_local.py), as a worker follows the chain.

Every operation is checked the same way: the exact set of what exists in every stand-in
before and after (lifecycle_expect.py spells out what each tier has), the objects it changes
in place (quota, Ingress, replicas, A records), and GET /tenants/{id}/resources, which must
list exactly what exists.
"""
from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

import psycopg
import pytest

from deploy.database import tenant_identifier
from deploy.inventory import BACKENDS_BEFORE_SUSPEND, REPLICAS_BEFORE_SUSPEND
from deploy.models import Cluster, ClusterSlot
from provisioning.engine.sweeper import sweep
from provisioning.models import ProvisioningJob, StepRun
from tenants.models import Tenant
from tests.dataplane.conftest import fast_settings, seeded  # noqa: F401  (fixtures)
from tests.dataplane.helpers import register
from tests.drivers.conftest import QUOTAS
from tests.drivers.lifecycle_expect import (
    CORE_PDBS,
    EXTERNAL_POLICY,
    PLATFORM_DNS,
    SUSPENDED_SERVICE,
    in_namespace,
    namespace_of,
    release,
    tenant_cluster,
    tenant_dns,
)
from tests.drivers.lifecycle_world import (  # noqa: F401  (world: the fixture)
    PARENT, SHARED_INGRESS_IP, added, dedicated_ingress_ip, dropped, world,
)
from tests.drivers.test_real_backend import AZ_TENANT, CLIENT, RG, SECRET, SUB, cloud  # noqa: F401  (cloud: the fixture)
from tests.engine_local import LocalCanvas

pytestmark = pytest.mark.django_db(transaction=True)


# --- driving the tenant -------------------------------------------------------------------------


def unique(prefix: str) -> str:
    """A slug of this run alone: roles and databases are global to the PostgreSQL server others test on too."""
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def latest_job(tenant_id) -> ProvisioningJob:
    return ProvisioningJob.objects.filter(tenant_id=tenant_id).order_by("-created_at").first()


def finished(canvas: LocalCanvas, tenant_id, kind: str) -> ProvisioningJob:
    """Run what was sent; the tenant's latest job is of `kind` and COMPLETED."""
    canvas.run()
    job = latest_job(tenant_id)
    assert job.kind == kind, (job.kind, kind)
    assert job.status == "COMPLETED", (job.status, job.error_message,
                                       list(StepRun.objects.filter(job=job).exclude(status="SUCCEEDED")
                                            .values_list("name", "status", "error")))
    return job


# The tenant's own Azure identity, as the Entra ID stub knows it (the platform's, in these tests).
SERVICE_PRINCIPAL = {"clientId": CLIENT, "clientSecret": SECRET, "azureTenantId": AZ_TENANT, "subscriptionId": SUB}


def provisioned(world, client, canvas, tier: str, slug: str) -> dict:
    world.serve(slug)
    if tier == "ENTERPRISE":
        response = client.post("/api/v1/tenants", {
            "name": f"Tenant {slug}", "slug": slug, "tier": tier, "region": "eastus",
            "adminEmail": f"admin@{slug}.example.com", "servicePrincipal": SERVICE_PRINCIPAL}, format="json")
        assert response.status_code == 201, response.content
        tenant = response.json()
    else:
        tenant = register(client, tier=tier, slug=slug)
    finished(canvas, tenant["id"], "PROVISION")
    assert Tenant.objects.get(id=tenant["id"]).status == "ACTIVE"
    assert_inventory_is_what_exists(world, client, tenant)
    return tenant


def accepted(response) -> dict:
    assert response.status_code == 202, response.content
    return response.json()


def resources(client, tenant_id) -> set[tuple[str, str, str]]:
    response = client.get(f"/api/v1/tenants/{tenant_id}/resources")
    assert response.status_code == 200, response.content
    listed = [(r["kind"], r["name"], r["location"]) for r in response.json()["results"]]
    assert len(listed) == len(set(listed)), listed  # each resource once
    return set(listed)


def assert_inventory_is_what_exists(world, client, tenant) -> None:
    listed, exists = resources(client, tenant["id"]), world.inventory_of(tenant["slug"])
    assert listed == exists, {"listed, not there": sorted(listed - exists),
                              "there, not listed": sorted(exists - listed)}


# --- reading the stand-ins ---------------------------------------------------------------------


def quota(cluster, slug: str) -> dict:
    return cluster.get("resourcequotas", namespace_of(slug), "tenant-quota")["spec"]["hard"]


def ingress(cluster, slug: str) -> dict:
    return cluster.get("ingresses", namespace_of(slug), "tenant-ingress")


def backends(ingress_object: dict) -> set[str]:
    return {path["backend"]["service"]["name"] for rule in ingress_object["spec"]["rules"]
            for path in rule["http"]["paths"]}


def workloads(cluster, slug: str) -> dict[str, tuple[int, str | None]]:
    """name -> (replicas, the suspension's annotation) of every Deployment and StatefulSet."""
    found = {}
    for plural in ("deployments", "statefulsets"):
        for name in cluster.names(plural, namespace_of(slug)):
            obj = cluster.get(plural, namespace_of(slug), name)
            found[name] = (obj["spec"].get("replicas", 1),
                           (obj["metadata"].get("annotations") or {}).get(REPLICAS_BEFORE_SUSPEND))
    return found


def a_records(world, slug: str) -> dict[str, list[str]]:
    zone = f"{slug}.{PARENT}"
    return {name: [r["ipv4Address"] for r in props["ARecords"]]
            for (rtype, name), props in world.arm.records(zone).items() if rtype == "A"}


def answers(world, slug: str) -> dict[str, int]:
    """What the tenant's hosts answer from outside, through DNS and the ingress."""
    return {host: world.edge.answer(host) for host in (f"{slug}.{PARENT}", f"api.{slug}.{PARENT}",
                                                       f"bi.{slug}.{PARENT}")}


def put_rows(world, slug: str, *, dedicated: bool = False) -> list[tuple]:
    """The tenant's application data in its schema (in its own database, ENTERPRISE), as its services write it."""
    schema = tenant_identifier(slug)
    rows = [(1, "first invoice", 12.5), (2, "second invoice", 99.0), (3, "ünïcode ✓", 0.0)]
    where = {"dbname": schema} if dedicated else {}
    with psycopg.connect(world.settings.DATABASE_URL, autocommit=True, **where) as conn:
        conn.execute(f'CREATE TABLE "{schema}".invoices (id int PRIMARY KEY, label text, amount numeric)')
        with conn.cursor() as cursor:
            cursor.executemany(f'INSERT INTO "{schema}".invoices VALUES (%s, %s, %s)', rows)
    return rows


def step_outputs(job, name: str) -> dict:
    return StepRun.objects.get(job=job, name=name).outputs


# --- FREE <-> PROFESSIONAL: the delta -----------------------------------------------------------------


def test_free_to_professional_and_back_adds_and_drops_exactly_the_tiers_delta(world, operator_client, monkeypatch):
    canvas = LocalCanvas(monkeypatch)
    slug = unique("updown")
    tenant = provisioned(world, operator_client, canvas, "FREE", slug)
    ns = namespace_of(slug)
    before = world.snapshot(slug)
    assert before["shared"] == tenant_cluster(slug, "FREE") and before["dedicated"] == set()
    assert before["dns"] == PLATFORM_DNS
    assert (before["roles"], before["schemas"], before["databases"], before["terraform"]) == (
        {tenant_identifier(slug)}, {("shared", tenant_identifier(slug))}, set(), set())
    assert ingress(world.shared, slug)["spec"]["ingressClassName"] == "nginx"

    # FREE -> PROFESSIONAL: the tier's own services, ingress controller, DNS zone and quotas.
    accepted(operator_client.post(f"/api/v1/tenants/{tenant['id']}/upgrade", {"newTier": "PROFESSIONAL"},
                                  format="json"))
    assert Tenant.objects.get(id=tenant["id"]).status == "UPGRADING"
    finished(canvas, tenant["id"], "CHANGE_TIER")
    upgraded = world.snapshot(slug)
    assert added(before, upgraded) == {
        "shared": (release(slug, "data") | release(slug, "ingress") | release(slug, "monitoring")
                   | in_namespace(slug, EXTERNAL_POLICY) | in_namespace(slug, CORE_PDBS)  # more than one replica
                   | {("secrets", ns, f"sh.helm.release.v1.{slug}-core.v2")}),  # core upgraded in place
        "dns": tenant_dns(slug),
    }
    assert dropped(before, upgraded) == {}
    assert quota(world.shared, slug) == QUOTAS["PROFESSIONAL"]
    assert ingress(world.shared, slug)["spec"]["ingressClassName"] == ns  # its own controller's class
    assert a_records(world, slug) == {label: [SHARED_INGRESS_IP] for label in ("@", "*", "api", "bi")}
    assert answers(world, slug) == {host: 200 for host in answers(world, slug)}
    record = Tenant.objects.get(id=tenant["id"])
    assert (record.tier, record.status) == ("PROFESSIONAL", "ACTIVE")
    assert_inventory_is_what_exists(world, operator_client, tenant)

    # PROFESSIONAL -> FREE: all of that goes again; the core services are upgraded once more.
    accepted(operator_client.post(f"/api/v1/tenants/{tenant['id']}/upgrade", {"newTier": "FREE"},
                                  format="json"))
    finished(canvas, tenant["id"], "CHANGE_TIER")
    downgraded = world.snapshot(slug)
    assert added(upgraded, downgraded) == {"shared": {("secrets", ns, f"sh.helm.release.v1.{slug}-core.v3")}}
    assert dropped(upgraded, downgraded) == {
        "shared": (release(slug, "data") | release(slug, "ingress") | release(slug, "monitoring")
                   | in_namespace(slug, EXTERNAL_POLICY) | in_namespace(slug, CORE_PDBS)),
        "dns": tenant_dns(slug),
    }
    assert quota(world.shared, slug) == QUOTAS["FREE"]
    assert ingress(world.shared, slug)["spec"]["ingressClassName"] == "nginx"
    assert answers(world, slug) == {host: 200 for host in answers(world, slug)}  # the parent's wildcard again
    record = Tenant.objects.get(id=tenant["id"])
    assert (record.tier, record.status) == ("FREE", "ACTIVE")
    assert_inventory_is_what_exists(world, operator_client, tenant)


# --- SUSPEND, ACTIVATE, DEPROVISION of a shared tenant ---------------------------------------------------


def assert_suspended(world, cluster, slug: str, tier: str, running: dict[str, int]) -> None:
    """Replicas 0 with the annotation, quota pods 0, every backend the 503 Service; the hosts answer 503."""
    assert workloads(cluster, slug) == {name: (0, str(replicas)) for name, replicas in running.items()}
    assert quota(cluster, slug) == {**QUOTAS[tier], "pods": "0"}
    suspended = ingress(cluster, slug)
    assert backends(suspended) == {"tenant-suspended"}
    assert backends({"spec": json.loads(suspended["metadata"]["annotations"][BACKENDS_BEFORE_SUSPEND])}) == {
        "core-web", "core-api", "core-bi"}
    assert set(answers(world, slug).values()) == {503}


def assert_running(world, cluster, slug: str, tier: str, running: dict[str, int]) -> None:
    assert workloads(cluster, slug) == {name: (replicas, None) for name, replicas in running.items()}
    assert quota(cluster, slug) == QUOTAS[tier]
    restored = ingress(cluster, slug)
    assert backends(restored) == {"core-web", "core-api", "core-bi"}
    assert BACKENDS_BEFORE_SUSPEND not in (restored["metadata"].get("annotations") or {})
    assert set(answers(world, slug).values()) == {200}


def deleted_now(world, client, canvas, tenant: dict) -> ProvisioningJob:
    """DELETE with no grace: an ACTIVE tenant is suspended at once, then the sweeper starts the deprovisioning."""
    answer = accepted(client.delete(f"/api/v1/tenants/{tenant['id']}", {"graceSeconds": 0}, format="json"))
    assert answer["status"] == "PENDING_DELETION"
    finished(canvas, tenant["id"], "SUSPEND")
    assert Tenant.objects.get(id=tenant["id"]).status == "PENDING_DELETION"
    report = sweep()
    assert len(report.deprovisioning) == 1, report
    canvas.run()
    return latest_job(tenant["id"])


def assert_nothing_of_the_tenant_left(world, client, tenant: dict, job: ProvisioningJob, rows) -> None:
    slug = tenant["slug"]
    after = world.snapshot(slug)
    assert (after["shared"], after["dedicated"], after["dns"]) == (set(), set(), PLATFORM_DNS)
    assert (after["roles"], after["schemas"], after["databases"], after["terraform"]) == (set(), set(), set(), set())
    assert resources(client, tenant["id"]) == set() == world.inventory_of(slug)
    record = Tenant.objects.get(id=tenant["id"])
    assert record.status == "DELETED" and record.deleted_at is not None
    # The export: one file, its checksum as recorded, the tenant's rows in it.
    exported = step_outputs(job, "EXPORT_TENANT_DATA")
    path = Path(exported["path"])
    assert after["exports"] == {path.name} and path.parent == world.export_dir
    content = path.read_bytes()
    assert hashlib.sha256(content).hexdigest() == exported["sha256"] and len(content) == exported["bytes"]
    for _, label, _ in rows:
        assert label.encode() in content


def suspended_then_activated(world, client, canvas, tenant: dict, cluster, tier: str) -> None:
    """SUSPEND adds the 503 Service and changes replicas, quota and backends in place; ACTIVATE puts back
    exactly what was there."""
    slug = tenant["slug"]
    before = world.snapshot(slug)
    running = {name: replicas for name, (replicas, _) in workloads(cluster, slug).items()}
    assert running and all(running.values())
    assert set(answers(world, slug).values()) == {200}
    where = "shared" if cluster is world.shared else "dedicated"

    accepted(client.post(f"/api/v1/tenants/{tenant['id']}/suspend", {"reason": "invoice unpaid"}, format="json"))
    finished(canvas, tenant["id"], "SUSPEND")
    suspended = world.snapshot(slug)
    assert added(before, suspended) == {where: in_namespace(slug, SUSPENDED_SERVICE)}
    assert dropped(before, suspended) == {}
    assert_suspended(world, cluster, slug, tier, running)
    record = Tenant.objects.get(id=tenant["id"])
    assert (record.status, record.suspension_reason) == ("SUSPENDED", "invoice unpaid")
    assert_inventory_is_what_exists(world, client, tenant)

    accepted(client.post(f"/api/v1/tenants/{tenant['id']}/activate", {}, format="json"))
    finished(canvas, tenant["id"], "ACTIVATE")
    assert world.snapshot(slug) == before
    assert_running(world, cluster, slug, tier, running)
    assert Tenant.objects.get(id=tenant["id"]).status == "ACTIVE"
    assert_inventory_is_what_exists(world, client, tenant)


@pytest.mark.parametrize("tier", ["FREE", "PROFESSIONAL"])
def test_a_shared_tenant_suspended_activated_then_deleted_leaves_nothing(world, operator_client, monkeypatch, tier):
    canvas = LocalCanvas(monkeypatch)
    tenant = provisioned(world, operator_client, canvas, tier, unique(f"life-{tier.lower()[:4]}"))
    rows = put_rows(world, tenant["slug"])
    suspended_then_activated(world, operator_client, canvas, tenant, world.shared, tier)

    job = deleted_now(world, operator_client, canvas, tenant)
    assert (job.kind, job.status) == ("DEPROVISION", "COMPLETED"), job.error_message
    assert_nothing_of_the_tenant_left(world, operator_client, tenant, job, rows)


# --- FREE / PROFESSIONAL -> ENTERPRISE: onto the dedicated cluster -------------------------------------


def moved_to_enterprise(world, client, canvas, tenant: dict, rows) -> ProvisioningJob:
    """The upgrade to ENTERPRISE, and everything it must have done, exactly."""
    slug, name = tenant["slug"], tenant_identifier(tenant["slug"])
    before = world.snapshot(slug)
    accepted(client.post(f"/api/v1/tenants/{tenant['id']}/upgrade", {
        "newTier": "ENTERPRISE", "servicePrincipal": SERVICE_PRINCIPAL}, format="json"))
    job = finished(canvas, tenant["id"], "CHANGE_TIER")
    assert before["shared"] and before["dedicated"] == set()
    assert_on_its_dedicated_cluster(world, client, tenant)
    # The data: copied into the dedicated database and verified; the shared schema dropped (the role stays).
    with psycopg.connect(world.settings.DATABASE_URL, dbname=name, autocommit=True) as conn:
        copied = conn.execute(f'SELECT id, label, amount::float FROM "{name}".invoices ORDER BY id').fetchall()
    assert copied == rows
    assert step_outputs(job, "COPY_TENANT_DATA")["tables"]["invoices"]["rows"] == len(rows)
    assert not ClusterSlot.objects.filter(tenant_key=slug).exists()
    return job


def assert_on_its_dedicated_cluster(world, client, tenant: dict) -> None:
    """What an ENTERPRISE tenant has, exactly: everything on its cluster, its database, its zone on its ingress."""
    slug, name = tenant["slug"], tenant_identifier(tenant["slug"])
    after = world.snapshot(slug)
    assert after["dedicated"] == tenant_cluster(slug, "ENTERPRISE")
    assert after["shared"] == set()
    assert quota(world.dedicated, slug) == QUOTAS["ENTERPRISE"]
    assert after["terraform"] == {f"tenant-{slug}"}
    cluster = Cluster.objects.get(name=f"aks-{slug}")
    assert (cluster.kind, cluster.api_endpoint, cluster.ingress_ip) == (
        "DEDICATED", world.dedicated.url, dedicated_ingress_ip(slug))
    assert (after["roles"], after["databases"], after["schemas"]) == ({name}, {name}, {("dedicated", name)})
    # The names: the tenant's zone, its A records on the dedicated cluster's ingress.
    assert after["dns"] == PLATFORM_DNS | tenant_dns(slug)
    assert a_records(world, slug) == {label: [dedicated_ingress_ip(slug)] for label in ("@", "*", "api", "bi")}
    assert answers(world, slug) == {host: 200 for host in answers(world, slug)}
    assert {world.edge.route(host)[0] for host in answers(world, slug)} == {world.dedicated}
    record = Tenant.objects.get(id=tenant["id"])
    assert (record.tier, record.status, record.azure_aks_cluster_name) == ("ENTERPRISE", "ACTIVE", f"aks-{slug}")
    assert_inventory_is_what_exists(world, client, tenant)


def test_a_free_tenant_moves_to_enterprise_then_is_suspended_activated_and_deleted(
        world, operator_client, monkeypatch):
    canvas = LocalCanvas(monkeypatch)
    slug = unique("move-free")
    tenant = provisioned(world, operator_client, canvas, "FREE", slug)
    rows = put_rows(world, slug)
    moved_to_enterprise(world, operator_client, canvas, tenant, rows)
    suspended_then_activated(world, operator_client, canvas, tenant, world.dedicated, "ENTERPRISE")

    job = deleted_now(world, operator_client, canvas, tenant)
    assert (job.kind, job.status) == ("DEPROVISION", "COMPLETED"), job.error_message
    assert_nothing_of_the_tenant_left(world, operator_client, tenant, job, rows)
    assert not Cluster.objects.filter(name=f"aks-{slug}").exists()


def test_a_professional_tenant_moves_to_enterprise_then_is_deleted(world, operator_client, monkeypatch):
    canvas = LocalCanvas(monkeypatch)
    slug = unique("move-pro")
    tenant = provisioned(world, operator_client, canvas, "PROFESSIONAL", slug)
    rows = put_rows(world, slug)
    assert a_records(world, slug) == {label: [SHARED_INGRESS_IP] for label in ("@", "*", "api", "bi")}
    moved_to_enterprise(world, operator_client, canvas, tenant, rows)

    job = deleted_now(world, operator_client, canvas, tenant)
    assert (job.kind, job.status) == ("DEPROVISION", "COMPLETED"), job.error_message
    assert_nothing_of_the_tenant_left(world, operator_client, tenant, job, rows)


def test_an_enterprise_tenant_on_its_own_cluster_is_suspended_activated_and_deleted(
        world, operator_client, monkeypatch):
    canvas = LocalCanvas(monkeypatch)
    tenant = provisioned(world, operator_client, canvas, "ENTERPRISE", unique("own"))
    assert_on_its_dedicated_cluster(world, operator_client, tenant)
    rows = put_rows(world, tenant["slug"], dedicated=True)
    suspended_then_activated(world, operator_client, canvas, tenant, world.dedicated, "ENTERPRISE")

    job = deleted_now(world, operator_client, canvas, tenant)
    assert (job.kind, job.status) == ("DEPROVISION", "COMPLETED"), job.error_message
    assert_nothing_of_the_tenant_left(world, operator_client, tenant, job, rows)
    assert not Cluster.objects.filter(name=f"aks-{tenant['slug']}").exists()


# --- the leftover scan ---------------------------------------------------------------------------------


def test_the_leftover_scan_names_what_the_inventory_missed_and_a_retry_after_removing_it_reaches_deleted(
        world, operator_client, monkeypatch):
    canvas = LocalCanvas(monkeypatch)
    slug = unique("stray")
    tenant = provisioned(world, operator_client, canvas, "FREE", slug)
    rows = put_rows(world, slug)
    # Made under the tenant's names and labels by hand, or by a step whose record was lost: no inventory
    # row, and no teardown step of a FREE tenant touches them.
    labels = {"matih.ai/tenant": slug}
    world.shared.put("namespaces", "", {"apiVersion": "v1", "kind": "Namespace",
                                        "metadata": {"name": f"{slug}-scratch", "labels": labels}})
    world.shared.put("clusterroles", "", {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                                          "metadata": {"name": f"{slug}-reader", "labels": labels}, "rules": []})
    zone = f"{slug}.{PARENT}"
    world.arm.add_zone(SUB, RG, zone)
    world.arm.put_record_set(SUB, RG, PARENT, "NS", slug, {"TTL": 3600, "NSRecords": [
        {"nsdname": "ns1-01.azure-dns.com."}]})
    planted = {("Namespace", f"{slug}-scratch", "shared-eastus-1"), ("ClusterRole", f"{slug}-reader", "shared-eastus-1"),
               ("DnsZone", zone, PARENT), ("DnsDelegation", f"NS/{slug}", PARENT)}
    assert planted <= world.inventory_of(slug) and not planted & resources(operator_client, tenant["id"])

    job = deleted_now(world, operator_client, canvas, tenant)
    for _ in range(world.settings.MATIH_MAX_RETRIES):  # the scan is retried with backoff, then gives up
        assert job.status == "RETRY_SCHEDULED", (job.status, job.error_message)
        sweep()
        canvas.run()
        job.refresh_from_db()
    assert (job.kind, job.status) == ("DEPROVISION", "FAILED"), job.error_message
    status = operator_client.get(f"/api/v1/tenants/{tenant['id']}/provisioning/status").json()
    assert (status["status"], status["jobStatus"]) == ("PENDING_DELETION", "FAILED")
    for kind, name, location in planted:
        assert f"{kind} {name} at {location}" in status["errorMessage"], status["errorMessage"]
    assert StepRun.objects.get(job=job, name="SCAN_LEFTOVERS").status == "FAILED"
    # The teardown itself finished: what is left is exactly what was planted, and nothing is listed.
    left = world.snapshot(slug)
    assert left["shared"] == {("namespaces", "", f"{slug}-scratch"), ("clusterroles", "", f"{slug}-reader")}
    assert left["dns"] == PLATFORM_DNS | tenant_dns(slug) - {(zone, "A", label) for label in ("@", "*", "api", "bi")}
    assert (left["roles"], left["schemas"]) == (set(), set())
    assert world.inventory_of(slug) == planted and resources(operator_client, tenant["id"]) == set()

    # An operator removes them; the retry goes on from the scan and the tenant is DELETED.
    world.shared.remove("namespaces", "", f"{slug}-scratch")
    world.shared.remove("clusterroles", "", f"{slug}-reader")
    world.arm.remove_record_set(PARENT, "NS", slug)
    world.arm.remove_zone(zone)
    accepted(operator_client.post(f"/api/v1/tenants/{tenant['id']}/provisioning/retry", {}, format="json"))
    canvas.run()
    job = latest_job(tenant["id"])
    assert (job.kind, job.status) == ("DEPROVISION", "COMPLETED"), job.error_message
    assert_nothing_of_the_tenant_left(world, operator_client, tenant, job, rows)
