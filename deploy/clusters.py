"""The cluster inventory: which cluster a tenant lands on."""
from __future__ import annotations

from django.db import transaction
from django.db.models import Count

from deploy.errors import TransientInfraError
from deploy.models import Cluster, ClusterSlot


def allocate_shared_slot(*, region: str, tenant_key: str) -> Cluster:
    """The least loaded enabled shared cluster of the region with room left; idempotent per tenant.

    1. A tenant that already holds a slot keeps it (a redelivered step repeats nothing).
    2. Lock the region's shared clusters so two tenants cannot both take the last slot.
    3. None with room is transient: capacity is added by operators, not by retrying harder.
    """
    existing = ClusterSlot.objects.select_related("cluster").filter(tenant_key=tenant_key).first()
    if existing is not None:
        return existing.cluster
    with transaction.atomic():
        candidates = list(
            Cluster.objects.select_for_update()
            .filter(region=region, kind=Cluster.Kind.SHARED, enabled=True)
            .order_by("id")
        )
        loads = dict(
            Cluster.objects.filter(id__in=[c.id for c in candidates])
            .annotate(load=Count("slots")).values_list("id", "load")
        )
        with_room = [c for c in candidates if loads.get(c.id, 0) < c.capacity]
        if not with_room:
            raise TransientInfraError(
                f"No shared cluster in {region} has room for another tenant.",
                hint="Add a shared cluster for this region (admin: Infrastructure > Clusters) "
                     "or raise a cluster's capacity; the job retries on its own.",
            )
        cluster = min(with_room, key=lambda c: (loads.get(c.id, 0) / c.capacity, c.id))
        ClusterSlot.objects.get_or_create(tenant_key=tenant_key, defaults={"cluster": cluster})
    return ClusterSlot.objects.select_related("cluster").get(tenant_key=tenant_key).cluster


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
