"""The cluster inventory's part of the leftover scan: a tenant's slot and its dedicated cluster's row."""
from __future__ import annotations

import pytest

from deploy import clusters

pytestmark = pytest.mark.django_db


def test_a_tenants_slot_and_dedicated_cluster_are_leftovers_until_released():
    slot = clusters.allocate_shared_slot(region="eastus", tenant_key="acme")
    clusters.register_dedicated_cluster(name="aks-acme", region="eastus", api_endpoint="https://aks-acme:443",
                                        credentials_ref="/x/kubeconfig")

    assert clusters.leftovers(tenant_key="acme", dedicated_cluster="aks-acme") == [
        {"kind": "ClusterSlot", "name": "acme", "location": slot.name},
        {"kind": "Cluster", "name": "aks-acme", "location": "eastus"}]
    assert clusters.leftovers(tenant_key="other") == []

    clusters.release_slot(tenant_key="acme")
    clusters.forget_cluster(name="aks-acme")
    assert clusters.leftovers(tenant_key="acme", dedicated_cluster="aks-acme") == []
