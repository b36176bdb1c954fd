"""The cluster inventory: which cluster a tenant lands on."""
from __future__ import annotations

from django.db import connection, transaction

from deploy.errors import TransientInfraError
from deploy.models import Cluster, ClusterSlot

SLOT_TABLE = ClusterSlot._meta.db_table
CLUSTER_TABLE = Cluster._meta.db_table

ALLOCATE_SQL = f"""
WITH existing AS (
    SELECT cluster_id FROM {SLOT_TABLE} WHERE tenant_key = %(key)s
), chosen AS (
    SELECT c.id FROM {CLUSTER_TABLE} c
    WHERE NOT EXISTS (SELECT 1 FROM existing)
      AND c.region = %(region)s AND c.kind = 'SHARED' AND c.enabled
      AND (SELECT count(*) FROM {SLOT_TABLE} s WHERE s.cluster_id = c.id) < c.capacity
    ORDER BY (SELECT count(*) FROM {SLOT_TABLE} s WHERE s.cluster_id = c.id)::float / c.capacity, c.id
    LIMIT 1
), inserted AS (
    INSERT INTO {SLOT_TABLE} (cluster_id, tenant_key, created_at)
    SELECT id, %(key)s, now() FROM chosen
    RETURNING cluster_id
), slot AS (
    SELECT cluster_id FROM existing UNION ALL SELECT cluster_id FROM inserted
)
SELECT c.id, c.name, c.region, c.kind, c.api_endpoint, c.credentials_ref, c.ingress_ip, c.capacity, c.enabled
FROM slot JOIN {CLUSTER_TABLE} c ON c.id = slot.cluster_id
"""


def allocate_shared_slot(*, region: str, tenant_key: str) -> Cluster:
    """The least loaded enabled shared cluster of the region with room left; idempotent per tenant.

    1. A tenant that already holds a slot keeps it (a redelivered step repeats nothing).
    2. Allocations in one region take turns (a transaction-scoped advisory lock), so two
       tenants cannot both take a cluster's last slot.
    3. None with room is transient: capacity is added by operators, and the job retries.
    """
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"matih:cluster-slots:{region}"])
        cursor.execute(ALLOCATE_SQL, {"key": tenant_key, "region": region})
        row = cursor.fetchone()
    if row is None:
        raise TransientInfraError(
            f"No shared cluster in {region} has room for another tenant.",
            hint="Add a shared cluster for this region (admin: Infrastructure > Clusters) "
                 "or raise a cluster's capacity; the job retries on its own.",
        )
    fields = ["id", "name", "region", "kind", "api_endpoint", "credentials_ref", "ingress_ip", "capacity", "enabled"]
    return Cluster(**dict(zip(fields, row)))


def release_slot(*, tenant_key: str) -> None:
    ClusterSlot.objects.filter(tenant_key=tenant_key).delete()


def register_dedicated_cluster(*, name: str, region: str, api_endpoint: str, credentials_ref: str,
                               ingress_ip: str | None = None) -> Cluster:
    cluster, _ = Cluster.objects.update_or_create(
        name=name,
        defaults=dict(region=region, kind=Cluster.Kind.DEDICATED, api_endpoint=api_endpoint,
                      credentials_ref=credentials_ref, ingress_ip=ingress_ip, capacity=1),
    )
    return cluster


def forget_cluster(*, name: str) -> None:
    ClusterSlot.objects.filter(cluster__name=name).delete()
    Cluster.objects.filter(name=name).delete()


def leftovers(*, tenant_key: str, dedicated_cluster: str | None = None) -> list[dict]:
    """The tenant's cluster slot, and its dedicated cluster's row, if the inventory of clusters still has them."""
    from deploy.inventory import resource

    found = [resource("ClusterSlot", slot.tenant_key, slot.cluster.name)
             for slot in ClusterSlot.objects.filter(tenant_key=tenant_key).select_related("cluster")]
    if dedicated_cluster:
        found += [resource("Cluster", cluster.name, cluster.region)
                  for cluster in Cluster.objects.filter(name=dedicated_cluster, kind=Cluster.Kind.DEDICATED)]
    return found
