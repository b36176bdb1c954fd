"""FREE and PROFESSIONAL -> ENTERPRISE, and an ENTERPRISE tenant's life, through the engine on the real backend.

The dedicated cluster is a second fake API server: the offline Terraform module
(tests/drivers/fixtures/offline) hands out its address as the cluster's api_endpoint and in
its kubeconfig (TF_VAR_api_server), as AKS's outputs would. The edge routes the tenant's
hosts by the A records in the ARM stub, so a verification after the cut-over reaches the
dedicated cluster's Ingress or fails. See test_lifecycle_real_backend.py for the checks.
"""
from __future__ import annotations

import psycopg
import pytest

from deploy.database import tenant_identifier
from deploy.models import Cluster, ClusterSlot
from provisioning.models import ProvisioningJob
from tenants.models import Tenant
from tests.drivers.conftest import QUOTAS
from tests.drivers.lifecycle_drive import (
    SERVICE_PRINCIPAL,
    a_records,
    accepted,
    answers,
    assert_inventory_is_what_exists,
    deleted_leaving_nothing,
    finished,
    hosts,
    provisioned,
    put_rows,
    quota,
    step_outputs,
    suspended_then_activated,
    unique,
)
from tests.drivers.lifecycle_expect import PLATFORM_DNS, tenant_cluster, tenant_dns
from tests.drivers.lifecycle_world import SHARED_INGRESS_IP, dedicated_ingress_ip, world  # noqa: F401
from tests.drivers.test_real_backend import cloud  # noqa: F401  (the fixture)
from tests.engine_local import LocalCanvas

pytestmark = pytest.mark.django_db(transaction=True)


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
    assert set(answers(world, slug).values()) == {200}
    assert {world.edge.route(host)[0] for host in hosts(slug)} == {world.dedicated}
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

    deleted_leaving_nothing(world, operator_client, canvas, tenant, rows)


def test_a_professional_tenant_moves_to_enterprise_then_is_deleted(world, operator_client, monkeypatch):
    canvas = LocalCanvas(monkeypatch)
    slug = unique("move-pro")
    tenant = provisioned(world, operator_client, canvas, "PROFESSIONAL", slug)
    rows = put_rows(world, slug)
    assert a_records(world, slug) == {label: [SHARED_INGRESS_IP] for label in ("@", "*", "api", "bi")}
    moved_to_enterprise(world, operator_client, canvas, tenant, rows)

    deleted_leaving_nothing(world, operator_client, canvas, tenant, rows)


def test_an_enterprise_tenant_on_its_own_cluster_is_suspended_activated_and_deleted(
        world, operator_client, monkeypatch):
    canvas = LocalCanvas(monkeypatch)
    tenant = provisioned(world, operator_client, canvas, "ENTERPRISE", unique("own"))
    assert_on_its_dedicated_cluster(world, operator_client, tenant)
    rows = put_rows(world, tenant["slug"], dedicated=True)
    suspended_then_activated(world, operator_client, canvas, tenant, world.dedicated, "ENTERPRISE")

    deleted_leaving_nothing(world, operator_client, canvas, tenant, rows)
