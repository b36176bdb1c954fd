"""Driving a tenant through the engine on the real backend, and reading what the stand-ins hold.

For the lifecycle tests (test_lifecycle_real_backend.py, test_lifecycle_enterprise_real_backend.py):
the operations go through the API, their canvases run in the test's process (LocalCanvas), and
every check reads the stand-ins themselves (lifecycle_world.World) or the API's answers.
"""
from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

import psycopg

from deploy.database import tenant_identifier
from deploy.inventory import BACKENDS_BEFORE_SUSPEND, REPLICAS_BEFORE_SUSPEND
from provisioning.engine.sweeper import sweep
from provisioning.models import ProvisioningJob, StepRun
from tenants.models import Tenant
from tests.dataplane.helpers import register
from tests.drivers.conftest import QUOTAS
from tests.drivers.lifecycle_expect import PLATFORM_DNS, SUSPENDED_SERVICE, in_namespace, namespace_of
from tests.drivers.lifecycle_world import PARENT, added, dropped
from tests.drivers.test_real_backend import AZ_TENANT, CLIENT, SECRET, SUB
from tests.engine_local import LocalCanvas

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
    # VERIFY_CONNECTIVITY reached every host over TLS through DNS and the ingress.
    assert {(host, 200) for host in hosts(slug)} <= set(world.edge.seen)
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


def hosts(slug: str) -> list[str]:
    return [f"{slug}.{PARENT}", f"api.{slug}.{PARENT}", f"bi.{slug}.{PARENT}"]


def answers(world, slug: str) -> dict[str, int]:
    """What the tenant's hosts answer from outside, through DNS and the ingress."""
    return {host: world.edge.answer(host) for host in hosts(slug)}


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


# --- SUSPEND, ACTIVATE, DEPROVISION ----------------------------------------------------------------


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


def deleted_leaving_nothing(world, client, canvas, tenant: dict, rows) -> None:
    job = deleted_now(world, client, canvas, tenant)
    assert (job.kind, job.status) == ("DEPROVISION", "COMPLETED"), job.error_message
    assert_nothing_of_the_tenant_left(world, client, tenant, job, rows)


def assert_nothing_of_the_tenant_left(world, client, tenant: dict, job: ProvisioningJob, rows) -> None:
    slug = tenant["slug"]
    after = world.snapshot(slug)
    assert (after["shared"], after["dedicated"], after["dns"]) == (set(), set(), PLATFORM_DNS)
    assert (after["roles"], after["schemas"], after["databases"], after["terraform"]) == (set(), set(), set(), set())
    assert resources(client, tenant["id"]) == set() == world.inventory_of(slug)  # no Cluster row or slot either
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
