"""The shared clusters a fresh installation starts with: one per configured region.

Operators add, disable or resize clusters in the admin; the real backend's
clusters need their API endpoint and credentials reference filled in there.
"""
from __future__ import annotations

from django.conf import settings

SHARED_CLUSTER_CAPACITY = 500


def shared_cluster_name(region: str) -> str:
    return f"shared-{region}-1"


def seed_shared_clusters(Cluster) -> None:
    for region in settings.MATIH_REGIONS:
        Cluster.objects.get_or_create(
            name=shared_cluster_name(region),
            defaults={"region": region, "kind": "SHARED", "capacity": SHARED_CLUSTER_CAPACITY,
                      "ingress_ip": "203.0.113.10"},
        )
