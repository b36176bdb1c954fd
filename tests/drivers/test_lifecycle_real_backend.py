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

import pytest

from deploy.database import tenant_identifier
from provisioning.engine.sweeper import sweep
from provisioning.models import StepRun
from tenants.models import Tenant
from tests.drivers.conftest import QUOTAS
from tests.drivers.lifecycle_drive import (
    a_records,
    accepted,
    answers,
    assert_inventory_is_what_exists,
    assert_nothing_of_the_tenant_left,
    deleted_leaving_nothing,
    deleted_now,
    finished,
    ingress,
    latest_job,
    provisioned,
    put_rows,
    quota,
    resources,
    suspended_then_activated,
    unique,
)
from tests.drivers.lifecycle_expect import (
    CORE_PDBS,
    EXTERNAL_POLICY,
    PLATFORM_DNS,
    in_namespace,
    namespace_of,
    release,
    tenant_cluster,
    tenant_dns,
)
from tests.drivers.lifecycle_world import (  # noqa: F401  (world: the fixture)
    PARENT,
    SHARED_CLUSTER,
    SHARED_INGRESS_IP,
    added,
    dropped,
    world,
)
from tests.drivers.test_real_backend import RG, SUB, cloud  # noqa: F401  (cloud: the fixture)
from tests.engine_local import LocalCanvas

pytestmark = pytest.mark.django_db(transaction=True)


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
    assert set(answers(world, slug).values()) == {200}
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
    assert set(answers(world, slug).values()) == {200}  # through the parent's wildcard again
    record = Tenant.objects.get(id=tenant["id"])
    assert (record.tier, record.status) == ("FREE", "ACTIVE")
    assert_inventory_is_what_exists(world, operator_client, tenant)


@pytest.mark.parametrize("tier", ["FREE", "PROFESSIONAL"])
def test_a_shared_tenant_suspended_activated_then_deleted_leaves_nothing(world, operator_client, monkeypatch, tier):
    canvas = LocalCanvas(monkeypatch)
    tenant = provisioned(world, operator_client, canvas, tier, unique(f"life-{tier.lower()[:4]}"))
    rows = put_rows(world, tenant["slug"])
    suspended_then_activated(world, operator_client, canvas, tenant, world.shared, tier)

    deleted_leaving_nothing(world, operator_client, canvas, tenant, rows)


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
    planted = {("Namespace", f"{slug}-scratch", SHARED_CLUSTER), ("ClusterRole", f"{slug}-reader", SHARED_CLUSTER),
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
