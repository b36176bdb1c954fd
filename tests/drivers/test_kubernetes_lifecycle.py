"""The Kubernetes driver's operations after provisioning, against the fake API server.

Suspension (workloads to zero, quota pods=0, the ingress answering 503),
activation (all of it back), the tier switch (ingress class, policies pruned),
the inventory each ensure_* reports and the leftover scan. Every body the
driver sends is validated by the fake with kubernetes-validate in strict mode.
"""
from __future__ import annotations

import json

import pytest

from deploy.errors import PermanentInfraError
from deploy.interfaces import ClusterRef
from deploy.inventory import BACKENDS_BEFORE_SUSPEND, REPLICAS_BEFORE_SUSPEND
from tests.drivers.conftest import QUOTAS, make_spec, provision

NS = "tenant-acme"


def workload(kind: str, name: str, replicas: int) -> dict:
    """A schema-valid Deployment or StatefulSet, as the tenant charts make them."""
    labels = {"app.kubernetes.io/name": name}
    spec = {"replicas": replicas, "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels},
                         "spec": {"containers": [{"name": name, "image": f"ghcr.io/matih/{name}:1.0.0"}]}}}
    if kind == "StatefulSet":
        spec["serviceName"] = name
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name, "namespace": NS}, "spec": spec}


@pytest.fixture
def running(driver, api, spec):
    """A provisioned tenant whose releases run three workloads."""
    provision(driver, spec)
    api.put("deployments", NS, workload("Deployment", "core-api", 2))
    api.put("deployments", NS, workload("Deployment", "core-web", 3))
    api.put("statefulsets", NS, workload("StatefulSet", "data-cache", 1))
    return spec


def replicas(api) -> dict[str, int]:
    return {name: api.get(plural, NS, name)["spec"]["replicas"]
            for plural in ("deployments", "statefulsets") for name in api.names(plural, NS)}


def annotation(api, plural: str, name: str) -> str | None:
    return (api.get(plural, NS, name)["metadata"].get("annotations") or {}).get(REPLICAS_BEFORE_SUSPEND)


# --- the inventory ---------------------------------------------------------------------------

def test_every_ensure_reports_the_resources_it_made_on_its_cluster(driver, api, spec):
    namespace = driver.ensure_namespace(spec)["resources"]
    quotas = driver.ensure_quotas(spec)["resources"]
    policies = driver.ensure_network_policies(spec)["resources"]
    ingress = driver.ensure_ingress(spec)["resources"]
    secret = driver.ensure_secret(spec, "tenant-database", {"password": "p"})["resources"]

    assert namespace == [{"kind": "Namespace", "name": NS, "location": "shared-1"},
                         {"kind": "ServiceAccount", "name": f"{NS}/tenant-admin", "location": "shared-1"},
                         {"kind": "Role", "name": f"{NS}/tenant-admin", "location": "shared-1"},
                         {"kind": "RoleBinding", "name": f"{NS}/tenant-admin", "location": "shared-1"}]
    assert quotas == [{"kind": "ResourceQuota", "name": f"{NS}/tenant-quota", "location": "shared-1"},
                      {"kind": "LimitRange", "name": f"{NS}/tenant-limits", "location": "shared-1"}]
    assert {r["name"] for r in policies} == {f"{NS}/{name}" for name in api.names("networkpolicies", NS)}
    assert ingress == [{"kind": "Ingress", "name": f"{NS}/tenant-ingress", "location": "shared-1"}]
    assert secret == [{"kind": "Secret", "name": f"{NS}/tenant-database", "location": "shared-1"}]
    # A redelivery reports the same resources, found rather than made.
    assert driver.ensure_namespace(spec)["resources"] == namespace


def test_a_cluster_row_without_its_own_endpoint_is_recorded_by_its_name(driver, api):
    # The seeded shared clusters carry no endpoint: their objects go to the default API server.
    spec = make_spec(cluster=ClusterRef("shared-eastus-1"))
    result = driver.ensure_namespace(spec)
    assert api.names("namespaces") == [NS]
    assert {r["location"] for r in result["resources"]} == {"shared-eastus-1"}


# --- suspension and activation ------------------------------------------------------------------

def test_suspension_scales_every_workload_to_zero_and_remembers_the_replicas(driver, api, running):
    result = driver.scale_workloads(running, 0)

    assert result == {"workloads": {"core-api": 2, "core-web": 3, "data-cache": 1}}
    assert replicas(api) == {"core-api": 0, "core-web": 0, "data-cache": 0}
    assert annotation(api, "deployments", "core-web") == "3"
    assert annotation(api, "statefulsets", "data-cache") == "1"
    assert driver.workloads(running) == {"core-api": 0, "core-web": 0, "data-cache": 0}


def test_a_redelivered_suspension_keeps_the_replicas_it_recorded_and_writes_nothing(driver, api, running):
    driver.scale_workloads(running, 0)
    api.requests.clear()

    again = driver.scale_workloads(running, 0)

    assert again == {"workloads": {"core-api": 2, "core-web": 3, "data-cache": 1}}  # not 0
    assert api.calls("PATCH") == []
    assert annotation(api, "deployments", "core-api") == "2"


def test_activation_restores_each_workload_and_removes_the_annotation(driver, api, running):
    driver.scale_workloads(running, 0)

    restored = driver.restore_workloads(running)

    assert restored == {"workloads": {"core-api": 2, "core-web": 3, "data-cache": 1}}
    assert replicas(api) == {"core-api": 2, "core-web": 3, "data-cache": 1}
    assert annotation(api, "deployments", "core-api") is None
    assert annotation(api, "statefulsets", "data-cache") is None
    # Restoring again (a redelivery) finds nothing recorded and changes nothing.
    api.requests.clear()
    assert driver.restore_workloads(running) == {"workloads": {}}
    assert api.calls("PATCH") == []


def test_every_patch_the_server_received_was_schema_valid(driver, api, running):
    validated = len(api.validated)
    driver.scale_workloads(running, 0)
    driver.restore_workloads(running)
    driver.patch_quota(running, {"pods": "0"})
    driver.block_ingress(running)
    driver.unblock_ingress(running)

    patches = api.calls("PATCH")
    assert {r.code for r in patches} == {200}
    assert {r.content_type for r in patches} == {"application/merge-patch+json"}
    # Each patch (and the 503 Service's POST) was validated as a whole object after merging.
    assert len(api.validated) - validated == len(patches) + 1


def test_suspension_sets_the_pod_quota_to_zero_and_the_tier_quota_comes_back(driver, api, running):
    result = driver.patch_quota(running, {"pods": "0"})

    assert result["previous"] == {"pods": "50"}
    hard = api.get("resourcequotas", NS, "tenant-quota")["spec"]["hard"]
    assert hard == {**QUOTAS["PROFESSIONAL"], "pods": "0"}
    assert driver.patch_quota(running, {"pods": "0"})["previous"] == {}  # already there

    assert driver.ensure_quotas(running)["patched"] == [f"ResourceQuota/{NS}/tenant-quota"]
    assert api.get("resourcequotas", NS, "tenant-quota")["spec"]["hard"] == QUOTAS["PROFESSIONAL"]


def test_patching_a_quota_that_was_never_made_is_permanent(driver, spec):
    driver.ensure_namespace(spec)
    with pytest.raises(PermanentInfraError) as caught:
        driver.patch_quota(spec, {"pods": "0"})
    assert "CONFIGURE_QUOTAS" in caught.value.hint


def test_a_blocked_ingress_sends_every_host_to_a_service_without_endpoints(driver, api, running):
    original = api.get("ingresses", NS, "tenant-ingress")["spec"]["rules"]

    result = driver.block_ingress(running)

    assert result["blocked"] and result["resources"] == [
        {"kind": "Service", "name": f"{NS}/tenant-suspended", "location": "shared-1"}]
    ingress = api.get("ingresses", NS, "tenant-ingress")
    backends = {p["backend"]["service"]["name"] for r in ingress["spec"]["rules"] for p in r["http"]["paths"]}
    assert backends == {"tenant-suspended"}
    assert [r["host"] for r in ingress["spec"]["rules"]] == running.hosts  # the same hosts answer 503
    assert json.loads(ingress["metadata"]["annotations"][BACKENDS_BEFORE_SUSPEND]) == {"rules": original}
    service = api.get("services", NS, "tenant-suspended")
    assert "selector" not in service["spec"]  # no selector: no endpoints, so the controller answers 503
    assert driver.ingress_state(running) == {
        "exists": True, "blocked": True, "ingressClass": "tenant-acme", "hosts": running.hosts,
        "backends": ["tenant-suspended"]}


def test_blocking_twice_keeps_the_original_backends(driver, api, running):
    driver.block_ingress(running)
    saved = api.get("ingresses", NS, "tenant-ingress")["metadata"]["annotations"][BACKENDS_BEFORE_SUSPEND]
    api.requests.clear()

    driver.block_ingress(running)

    assert api.get("ingresses", NS, "tenant-ingress")["metadata"]["annotations"][BACKENDS_BEFORE_SUSPEND] == saved
    assert api.calls("PATCH", "/ingresses/") == []


def test_unblocking_restores_the_backends_and_removes_the_503_service(driver, api, running):
    desired = driver.ingress_manifest(running)["spec"]["rules"]
    driver.block_ingress(running)

    assert driver.unblock_ingress(running) == {"exists": True, "blocked": False}
    driver.unblock_ingress(running)  # a redelivery

    ingress = api.get("ingresses", NS, "tenant-ingress")
    assert ingress["spec"]["rules"] == desired
    assert BACKENDS_BEFORE_SUSPEND not in ingress["metadata"]["annotations"]
    assert api.get("services", NS, "tenant-suspended") is None
    state = driver.ingress_state(running)
    assert not state["blocked"] and state["backends"] == ["core-api", "core-bi", "core-web"]


def test_a_tenant_without_an_ingress_has_nothing_to_block(driver, api, spec):
    driver.ensure_namespace(spec)
    assert driver.block_ingress(spec) == {"exists": False, "blocked": False, "resources": []}
    assert api.names("services", NS) == []
    assert driver.ingress_state(spec)["exists"] is False


# --- tier change --------------------------------------------------------------------------------

def test_a_tier_change_switches_the_ingress_class_and_prunes_the_external_policy(driver, api):
    professional, free = make_spec("PROFESSIONAL"), make_spec("FREE")
    provision(driver, professional)
    assert "allow-external-to-ingress-controller" in api.names("networkpolicies", NS)

    policies = driver.ensure_network_policies(free)
    driver.ensure_ingress(free)
    driver.ensure_quotas(free)

    assert policies["pruned"] == [f"NetworkPolicy/{NS}/allow-external-to-ingress-controller"]
    assert api.names("networkpolicies", NS) == sorted(
        ["default-deny-ingress", "allow-same-namespace", "allow-from-ingress-controller", "allow-from-monitoring"])
    assert driver.ingress_state(free)["ingressClass"] == "nginx"
    assert api.get("resourcequotas", NS, "tenant-quota")["spec"]["hard"] == QUOTAS["FREE"]
    # And back up: the policy returns, the tenant's own class again.
    driver.ensure_network_policies(professional)
    driver.ensure_ingress(professional)
    assert "allow-external-to-ingress-controller" in api.names("networkpolicies", NS)
    assert driver.ingress_state(professional)["ingressClass"] == "tenant-acme"


def test_policies_someone_else_made_are_not_pruned(driver, api, spec):
    provision(driver, spec)
    api.put("networkpolicies", NS, {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                                    "metadata": {"name": "tenant-own-rule", "namespace": NS},
                                    "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}})
    assert driver.ensure_network_policies(spec)["pruned"] == []
    assert "tenant-own-rule" in api.names("networkpolicies", NS)


# --- the leftover scan ---------------------------------------------------------------------------

def test_the_leftover_scan_asks_the_cluster_not_the_records(driver, api, spec):
    provision(driver, spec)
    # Planted: what the inventory never heard of.
    api.put("namespaces", "", {"apiVersion": "v1", "kind": "Namespace",
                               "metadata": {"name": "acme-sandbox", "labels": {"matih.ai/tenant": "acme"}}})
    api.put("clusterroles", "", {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                                 "metadata": {"name": "tenant-acme-ingress", "labels": {"matih.ai/tenant": "acme"}},
                                 "rules": []})
    api.put("ingressclasses", "", {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
                                   "metadata": {"name": "tenant-acme", "labels": {"matih.ai/tenant": "acme"}},
                                   "spec": {"controller": "k8s.io/ingress-nginx"}})
    # Another tenant's objects are not this tenant's leftovers.
    other = make_spec(slug="other")
    driver.ensure_namespace(other)
    api.put("clusterroles", "", {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                                 "metadata": {"name": "tenant-other-ingress", "labels": {"matih.ai/tenant": "other"}},
                                 "rules": []})

    assert driver.leftovers(spec) == [
        {"kind": "Namespace", "name": "acme-sandbox", "location": "shared-1"},
        {"kind": "Namespace", "name": NS, "location": "shared-1"},
        {"kind": "IngressClass", "name": "tenant-acme", "location": "shared-1"},
        {"kind": "ClusterRole", "name": "tenant-acme-ingress", "location": "shared-1"},
    ]

    driver.delete_namespace(spec)
    assert {r["name"] for r in driver.leftovers(spec)} == {"acme-sandbox", "tenant-acme", "tenant-acme-ingress"}


def test_a_namespace_that_lost_its_labels_is_still_found_by_name(driver, api, spec):
    api.put("namespaces", "", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    assert driver.leftovers(spec) == [{"kind": "Namespace", "name": NS, "location": "shared-1"}]


def test_a_clean_cluster_has_no_leftovers(driver, api, spec):
    provision(driver, spec)
    driver.delete_namespace(spec)
    assert driver.leftovers(spec) == []
