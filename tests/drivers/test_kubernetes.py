"""The Kubernetes driver against a fake API server that answers like kube-apiserver.

The driver's real client (the official `kubernetes` package, its urllib3
transport) talks HTTP to tests.drivers.fake_kube, which validates every body it
is sent with kubernetes-validate in strict mode.
"""
from __future__ import annotations

import base64
import socket

import kubernetes_validate
import pytest

from deploy.errors import PermanentInfraError, TransientInfraError
from deploy.interfaces import ClusterRef
from deploy.kubernetes import KubernetesClusterDriver
from tests.drivers.conftest import QUOTAS, TIERS, make_spec, provision
from tests.drivers.fake_kube import KUBE_VERSION, FakeKubeApi, Fault

NS = "tenant-acme"


# --- what gets created ---------------------------------------------------------------

def test_namespace_carries_tenant_labels_and_admin_rbac(driver, api, spec):
    result = driver.ensure_namespace(spec)

    namespace = api.get("namespaces", "", NS)
    assert namespace["metadata"]["labels"]["matih.ai/tenant"] == "acme"
    assert namespace["metadata"]["labels"]["matih.ai/tier"] == "professional"
    assert api.names("serviceaccounts", NS) == ["tenant-admin"]
    assert api.names("roles", NS) == ["tenant-admin"]
    binding = api.get("rolebindings", NS, "tenant-admin")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "tenant-admin"}
    assert {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": spec.admin_email} in binding["subjects"]
    assert result["created"] == ["Namespace/tenant-acme", "ServiceAccount/tenant-acme/tenant-admin",
                                 "Role/tenant-acme/tenant-admin", "RoleBinding/tenant-acme/tenant-admin"]


@pytest.mark.parametrize("tier", ["FREE", "PROFESSIONAL"])
def test_quota_and_limit_range_follow_the_tier(driver, api, tier):
    spec = make_spec(tier)
    driver.ensure_namespace(spec)
    driver.ensure_quotas(spec)

    assert api.get("resourcequotas", NS, "tenant-quota")["spec"]["hard"] == QUOTAS[tier]
    (limits,) = api.get("limitranges", NS, "tenant-limits")["spec"]["limits"]
    assert limits["default"] == {"cpu": "500m", "memory": "512Mi"}
    assert limits["defaultRequest"] == {"cpu": "100m", "memory": "256Mi"}
    assert limits["max"] == {"cpu": "2", "memory": "4Gi"}
    assert limits["min"] == {"cpu": "50m", "memory": "64Mi"}


def test_network_policies_deny_by_default_and_allow_namespace_ingress_and_monitoring(driver, api):
    free, professional = make_spec("FREE", "free1"), make_spec("PROFESSIONAL", "pro1")
    for spec in (free, professional):
        driver.ensure_namespace(spec)
        driver.ensure_network_policies(spec)

    deny = api.get("networkpolicies", "tenant-free1", "default-deny-ingress")["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress"]}
    sources = {name: api.get("networkpolicies", "tenant-free1", name)["spec"]["ingress"][0]["from"][0]
               for name in ("allow-same-namespace", "allow-from-ingress-controller", "allow-from-monitoring")}
    assert sources["allow-same-namespace"] == {"podSelector": {}}
    assert sources["allow-from-ingress-controller"]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "ingress-nginx"}
    assert sources["allow-from-monitoring"]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "monitoring"}
    # Only tiers with their own ingress controller open it to the outside.
    assert "allow-external-to-ingress-controller" not in api.names("networkpolicies", "tenant-free1")
    assert "allow-external-to-ingress-controller" in api.names("networkpolicies", "tenant-pro1")


def test_ingress_serves_the_tenant_hosts_with_cert_manager_tls(driver, api, spec):
    driver.ensure_namespace(spec)
    driver.ensure_ingress(spec)

    ingress = api.get("ingresses", NS, "tenant-ingress")
    assert ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "letsencrypt-prod-dns01"
    assert ingress["spec"]["tls"] == [{"hosts": ["acme.matih.ai", "api.acme.matih.ai", "bi.acme.matih.ai"],
                                       "secretName": "acme-tls"}]
    assert [rule["host"] for rule in ingress["spec"]["rules"]] == spec.hosts


def test_every_manifest_of_every_tier_passes_strict_schema_validation(driver):
    for tier in TIERS:
        for manifest in driver.manifests(make_spec(tier)):
            kubernetes_validate.validate(manifest, KUBE_VERSION, strict=True)


def test_every_body_the_server_received_was_schema_valid(driver, api, spec):
    provision(driver, spec)
    driver.ensure_secret(spec, "tenant-db", {"password": "p"})

    posted = api.calls("POST")
    assert len(posted) == 4 + 2 + 5 + 1 + 1
    assert len(api.validated) == len(posted)  # the fake answers 422 to anything invalid
    assert all(r.content_type == "application/json" for r in posted)


# --- idempotency, drift, compensation ---------------------------------------------------

def test_redelivered_step_creates_nothing_twice(driver, api, spec):
    provision(driver, spec)
    versions = {key: obj["metadata"]["resourceVersion"] for key, obj in api.objects.items()}
    api.requests.clear()

    again = driver.ensure_namespace(spec)

    assert again["created"] == [] and again["patched"] == []
    assert len(again["unchanged"]) == 4
    # Each object: POST answered 409 AlreadyExists, then a GET, and no write.
    assert [r.method for r in api.requests] == ["POST", "GET"] * 4
    assert {key: obj["metadata"]["resourceVersion"] for key, obj in api.objects.items()} == versions


def test_drifted_objects_are_patched_back_to_the_desired_state(driver, api, spec):
    provision(driver, spec)
    quota = api.get("resourcequotas", NS, "tenant-quota")
    quota["spec"]["hard"]["pods"] = "500"  # someone edited the quota by hand
    api.put("resourcequotas", NS, quota)
    ingress = api.get("ingresses", NS, "tenant-ingress")
    del ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"]
    api.put("ingresses", NS, ingress)

    assert driver.ensure_quotas(spec)["patched"] == ["ResourceQuota/tenant-acme/tenant-quota"]
    assert driver.ensure_ingress(spec)["patched"] == ["Ingress/tenant-acme/tenant-ingress"]

    assert api.get("resourcequotas", NS, "tenant-quota")["spec"]["hard"]["pods"] == "50"
    assert api.get("ingresses", NS, "tenant-ingress")["metadata"]["annotations"] == {
        "cert-manager.io/cluster-issuer": "letsencrypt-prod-dns01"}
    assert {r.content_type for r in api.calls("PATCH")} == {"application/merge-patch+json"}


def test_secret_is_stored_encoded_and_a_changed_value_is_patched(driver, api, spec):
    driver.ensure_namespace(spec)
    assert driver.ensure_secret(spec, "tenant-db", {"password": "first"})["created"] == ["Secret/tenant-acme/tenant-db"]
    assert driver.ensure_secret(spec, "tenant-db", {"password": "first"})["unchanged"] == ["Secret/tenant-acme/tenant-db"]
    assert driver.ensure_secret(spec, "tenant-db", {"password": "second"})["patched"] == ["Secret/tenant-acme/tenant-db"]

    data = api.get("secrets", NS, "tenant-db")["data"]
    assert base64.b64decode(data["password"]).decode() == "second"


def test_compensations_remove_what_was_made_and_repeat_harmlessly(driver, api, spec):
    provision(driver, spec)
    driver.ensure_secret(spec, "tenant-db", {"password": "p"})

    for _ in range(2):  # a redelivered compensation finds 404s: success
        driver.delete_ingress(spec)
        driver.delete_network_policies(spec)
        driver.delete_quotas(spec)
        driver.delete_secret(spec, "tenant-db")
    assert api.names("ingresses", NS) == api.names("networkpolicies", NS) == []
    assert api.names("resourcequotas", NS) == api.names("limitranges", NS) == api.names("secrets", NS) == []
    assert {r.code for r in api.calls("DELETE")} == {200, 404}

    driver.delete_namespace(spec)
    driver.delete_namespace(spec)
    assert api.objects == {}


# --- errors ------------------------------------------------------------------------------

def test_invalid_object_is_permanent_with_the_servers_message(driver):
    bad = make_spec(slug="Bad_Slug")
    with pytest.raises(PermanentInfraError) as caught:
        driver.ensure_namespace(bad)
    assert "422" in caught.value.message
    assert 'metadata.name: Invalid value: "tenant-Bad_Slug"' in caught.value.provider_message


def test_object_in_a_missing_namespace_is_permanent(driver, spec):
    with pytest.raises(PermanentInfraError) as caught:
        driver.ensure_quotas(spec)
    assert 'namespaces "tenant-acme" not found' in caught.value.provider_message
    assert "namespace" in caught.value.hint


def test_forbidden_is_permanent(driver, api, spec):
    api.inject(Fault("POST", "/api/v1/namespaces", 403, "Forbidden",
                     'namespaces is forbidden: User "matih" cannot create resource "namespaces"'))
    with pytest.raises(PermanentInfraError) as caught:
        driver.ensure_namespace(spec)
    assert "cannot create resource" in caught.value.provider_message
    assert "credentials" in caught.value.hint


@pytest.mark.parametrize("code,reason,headers,retry_after", [
    (429, "TooManyRequests", {"Retry-After": "7"}, 7.0),
    (503, "ServiceUnavailable", {}, None),
    (500, "InternalError", {}, None),
])
def test_overload_and_server_errors_are_transient(driver, api, spec, code, reason, headers, retry_after):
    api.inject(Fault("POST", "/api/v1/namespaces", code, reason, "try again", headers))
    with pytest.raises(TransientInfraError) as caught:
        driver.ensure_namespace(spec)
    assert caught.value.retry_after == retry_after
    assert str(code) in caught.value.message
    driver.ensure_namespace(spec)  # the next attempt succeeds


def test_conflicting_write_is_transient(driver, api, spec):
    provision(driver, spec)
    quota = api.get("resourcequotas", NS, "tenant-quota")
    quota["spec"]["hard"]["pods"] = "1"
    api.put("resourcequotas", NS, quota)
    api.inject(Fault("PATCH", "/resourcequotas/", 409, "Conflict", "the object has been modified"))
    with pytest.raises(TransientInfraError):
        driver.ensure_quotas(spec)


def test_unreachable_api_server_is_transient(spec):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens once closed
    driver = KubernetesClusterDriver(ClusterRef("gone", f"http://127.0.0.1:{port}"), request_timeout=2)
    with pytest.raises(TransientInfraError) as caught:
        driver.ensure_namespace(spec)
    assert "unreachable" in caught.value.message


def test_slow_api_server_times_out_as_transient(api, spec):
    driver = KubernetesClusterDriver(ClusterRef("slow", api.url), request_timeout=0.3)
    api.inject(Fault("POST", "/api/v1/namespaces", code=0, delay=1.0))
    with pytest.raises(TransientInfraError):
        driver.ensure_namespace(spec)


def test_namespace_still_terminating_is_transient(driver, api, spec):
    driver.ensure_namespace(spec)
    namespace = api.get("namespaces", "", NS)
    namespace["status"]["phase"] = "Terminating"
    api.put("namespaces", "", namespace)
    with pytest.raises(TransientInfraError) as caught:
        driver.ensure_namespace(spec)
    assert "still being deleted" in caught.value.message


# --- clusters and rollout -------------------------------------------------------------

def test_each_cluster_gets_its_own_client_and_kubeconfig_credentials(driver, api, tmp_path):
    dedicated_api = FakeKubeApi().start()
    try:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(f"""
apiVersion: v1
kind: Config
clusters: [{{name: aks-acme, cluster: {{server: "{dedicated_api.url}"}}}}]
users: [{{name: matih, user: {{token: dedicated-cluster-token}}}}]
contexts: [{{name: acme, context: {{cluster: aks-acme, user: matih}}}}]
current-context: acme
""")
        dedicated = ClusterRef("aks-acme", credentials_ref=str(kubeconfig), dedicated=True)
        shared_tenant, enterprise_tenant = make_spec("FREE", "small"), make_spec("ENTERPRISE", "big", cluster=dedicated)

        driver.ensure_namespace(shared_tenant)
        driver.ensure_namespace(enterprise_tenant)

        assert api.names("namespaces") == ["tenant-small"]
        assert dedicated_api.names("namespaces") == ["tenant-big"]
        assert {r.authorization for r in dedicated_api.requests} == {"Bearer dedicated-cluster-token"}
        assert driver.api_client(dedicated) is driver.api_client(dedicated)
        assert driver.api_client(dedicated) is not driver.api_client(None)
    finally:
        dedicated_api.stop()


def test_missing_kubeconfig_is_permanent(spec, tmp_path):
    driver = KubernetesClusterDriver()
    cluster = ClusterRef("aks-x", credentials_ref=str(tmp_path / "absent"))
    with pytest.raises(PermanentInfraError):
        driver.api_client(cluster)


def test_rollout_status_reports_each_workload(driver, api, spec):
    driver.ensure_namespace(spec)

    def deployment(name, replicas, ready, generation=1, observed=1):
        return {"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": name, "namespace": NS, "generation": generation},
                "spec": {"replicas": replicas},
                "status": {"observedGeneration": observed, "replicas": replicas,
                           "updatedReplicas": ready, "readyReplicas": ready, "availableReplicas": ready}}

    api.put("deployments", NS, deployment("core-api", 2, 2))
    api.put("deployments", NS, deployment("core-web", 2, 1))
    api.put("deployments", NS, deployment("core-bi", 1, 1, generation=2, observed=1))
    api.put("statefulsets", NS, {**deployment("data-postgres", 1, 1), "kind": "StatefulSet"})

    assert driver.rollout_status(spec) == {"core-api": True, "core-web": False, "core-bi": False,
                                           "data-postgres": True}
