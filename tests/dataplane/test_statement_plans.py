"""What the hot path's statements read, with many tenants in the tables: a step of one tenant must
not scan the rows of the others (the cost of a step would grow with the platform's size)."""
from __future__ import annotations

import re

import pytest
from django.db import connection, transaction
from psycopg import sql as pg_sql

from deploy import simulated
from deploy.interfaces import TenantSpec
from provisioning.engine import inventory
from provisioning.models import JobKind, ProvisioningJob, TenantResource
from tenants.models import Tenant

pytestmark = pytest.mark.django_db

OTHER_TENANTS = 20
RESOURCES_EACH = 60


def _tenant_with_resources(index: int, count: int) -> tuple[Tenant, ProvisioningJob]:
    tenant = Tenant.objects.create(name=f"Plan {index}", slug=f"plan-{index}", tier="FREE", region="eastus",
                                   admin_email=f"admin@plan-{index}.example.com")
    job = ProvisioningJob.objects.create(tenant=tenant, kind=JobKind.PROVISION, tier="FREE")
    TenantResource.objects.bulk_create([
        TenantResource(tenant=tenant, kind="NetworkPolicy", name=f"tenant-plan-{index}/policy-{n}",
                       location="aks-shared-eastus", job=job, step="CONFIGURE_NETWORKING")
        for n in range(count)])
    return tenant, job


def _rows_read(plan: dict, table: str = inventory.INVENTORY) -> int:
    """Rows the plan's scans of `table` read (kept or filtered out), over all their loops."""
    total = 0
    stack = [plan["Plan"]]
    while stack:
        node = stack.pop()
        if node.get("Relation Name") == table and "Scan" in node["Node Type"]:
            kept_and_dropped = node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0)
            total += kept_and_dropped * node.get("Actual Loops", 1)
        stack += node.get("Plans", [])
    return total


def _explain(sql: str, params: dict, *, generic: bool) -> dict:
    """EXPLAIN ANALYZE of `sql` (rolled back): with the plan made for these values, or (generic) with
    the one plan a worker's session makes for every value (matih.celery: force_generic_plan)."""
    with transaction.atomic():
        with connection.cursor() as cursor:
            if not generic:
                cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params)
            else:
                names = list(dict.fromkeys(re.findall(r"%\((\w+)\)s", sql)))
                positional = re.sub(r"%\((\w+)\)s", lambda m: f"${names.index(m.group(1)) + 1}", sql)
                values = pg_sql.SQL(", ").join(pg_sql.Literal(params[name]) for name in names)
                cursor.execute("PREPARE planned AS " + positional.replace("%%", "%"))
                try:
                    cursor.execute("SET LOCAL plan_cache_mode = force_generic_plan")
                    cursor.execute(pg_sql.SQL("EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE planned({})").format(values)
                                   .as_string(connection.connection))
                    (((plan,),),) = cursor.fetchall()
                finally:
                    cursor.execute("DEALLOCATE planned")
                transaction.set_rollback(True)
                return plan
            (plan,) = cursor.fetchone()[0]
        transaction.set_rollback(True)
    return plan


def _explain_record(tenant, job, outputs: dict, *, generic: bool = False) -> int:
    """Rows the inventory's CTEs (the ones a step's success runs) read."""
    sql = f"WITH j AS (SELECT %(tenant)s::uuid AS tenant_id){inventory.ctes('j')} SELECT 1"
    return _rows_read(_explain(sql, {"tenant": str(tenant.id), "job": str(job.id), "name": "CONFIGURE_NETWORKING",
                                     **inventory.params(outputs)}, generic=generic))


@pytest.mark.parametrize("generic", [False, True], ids=["planned-for-the-values", "generic-plan"])
def test_a_steps_inventory_reads_only_its_own_tenants_resources(generic):
    for index in range(OTHER_TENANTS):
        _tenant_with_resources(index, RESOURCES_EACH)
    tenant, job = _tenant_with_resources(OTHER_TENANTS, 3)
    assert TenantResource.objects.filter(removed_at__isnull=True).count() == OTHER_TENANTS * RESOURCES_EACH + 3

    # A success that removes nothing (most of them) reads no inventory row at all.
    assert _explain_record(tenant, job, {"resources": [{"kind": "Namespace", "name": "tenant-x",
                                                        "location": "aks-shared-eastus"}]}, generic=generic) == 0
    # One that removes reads its own tenant's live rows, not the 1,200 of the others.
    assert _explain_record(tenant, job, {"removed": [{"kind": "NetworkPolicy"}]}, generic=generic) <= 3


def _spec(slug: str) -> TenantSpec:
    return TenantSpec(tenant_id=slug, slug=slug, tier="FREE", region="eastus", admin_email=f"admin@{slug}.example",
                      namespace=f"tenant-{slug}", dns_zone=f"{slug}.matih.ai", parent_zone="matih.ai",
                      quota={}, limit_range={})


@pytest.mark.parametrize("generic", [False, True], ids=["planned-for-the-values", "generic-plan"])
def test_the_simulated_clouds_namespace_queries_read_only_that_namespace(generic):
    cloud = simulated.SimulatedCloud(time_scale=0, shared_cluster="shared-1")
    for index in range(OTHER_TENANTS * 10):  # 200 tenants, 5 workloads and 3 policies each, on one cluster
        other = _spec(f"other-{index}")
        cloud.kubernetes.ensure_network_policies(other)
        cloud.helm.install(other, f"other-{index}-core", "core-services", {})
        cloud.helm.install(other, f"other-{index}-data", "data-services", {})
    spec = _spec("acme")
    cloud.kubernetes.ensure_namespace(spec)
    cloud.kubernetes.ensure_network_policies(spec)
    cloud.helm.install(spec, "acme-core", "core-services", {})

    params = {"location": "shared-1", "namespace": spec.namespace, **simulated.name_range(f"{spec.namespace}/"),
              "kinds": list(simulated.WORKLOAD_KINDS), "ingress": f"{spec.namespace}/tenant-ingress",
              "wanted": [f"{spec.namespace}/default-deny"], **simulated._row_params(spec.slug, [])}
    for sql in (simulated.CHECK_SQL, simulated.ENSURE_POLICIES_SQL):
        plan = _explain(sql, {name: params[name] for name in re.findall(r"%\((\w+)\)s", sql)}, generic=generic)
        assert _rows_read(plan, simulated.TABLE) <= 8, sql  # the namespace's own rows, of 1,600 on the cluster
