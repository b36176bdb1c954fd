"""The tenant charts and the Helm driver, through Helm's own engine (helm-python-sdk).

Every chart is rendered and linted (strict) by the real Helm engine for each
tier, and every rendered object is validated with kubernetes-validate in strict
mode. Cluster operations are tested where they meet the cluster: the SDK against
an unreachable API server, the CLI mode against a stand-in `helm` executable.
"""
from __future__ import annotations

import json
import os
import stat
import sys
from decimal import Decimal

import kubernetes_validate
import pytest

from deploy.errors import PermanentInfraError, TransientInfraError
from deploy.helm import HelmReleaseDriver
from deploy.interfaces import ClusterRef
from deploy.kubernetes import HOST_BACKENDS, KubernetesClusterDriver
from tests.drivers.conftest import LIMIT_RANGE, QUOTAS, TIERS, make_spec
from tests.drivers.fake_kube import KUBE_VERSION

CHARTS = ("core-services", "data-services", "ingress-controller", "monitoring")
# Which releases each tier installs (DESIGN.md: FREE uses the shared ingress and has no data services).
TIER_CHARTS = {
    "FREE": ("core-services", "monitoring"),
    "PROFESSIONAL": CHARTS,
    "ENTERPRISE": CHARTS,
}


@pytest.fixture(scope="module")
def helm():
    return HelmReleaseDriver()


def cpu(quantity: str) -> Decimal:
    return Decimal(quantity[:-1]) / 1000 if quantity.endswith("m") else Decimal(quantity)


def memory(quantity: str) -> Decimal:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return Decimal(quantity[:-2]) * factor
    return Decimal(quantity)


def pod_templates(objects: list[dict]):
    for obj in objects:
        if obj["kind"] in ("Deployment", "StatefulSet"):
            yield obj["spec"].get("replicas", 1), obj["spec"]["template"]["spec"]


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize("chart", CHARTS)
def test_chart_renders_lints_clean_and_every_object_is_schema_valid(helm, chart, tier):
    spec = make_spec(tier)

    assert helm.lint(spec, chart) == []
    objects = helm.render(spec, chart.split("-")[0], chart, {})

    assert objects, f"{chart} rendered nothing"
    for obj in objects:
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        assert obj["metadata"]["labels"]["matih.ai/tenant"] == "acme"
        if obj["kind"] not in ("IngressClass", "ClusterRole", "ClusterRoleBinding"):
            assert obj["metadata"]["namespace"] == "tenant-acme"


@pytest.mark.parametrize("tier", TIERS)
def test_every_container_fits_the_limit_range_and_the_tier_fits_its_quota(helm, tier):
    spec = make_spec(tier)
    requested_cpu = requested_memory = Decimal(0)
    pods = 0
    for chart in TIER_CHARTS[tier]:
        for replicas, pod in pod_templates(helm.render(spec, chart, chart, {})):
            pods += replicas
            for container in pod["containers"]:
                resources = container["resources"]
                assert cpu(resources["limits"]["cpu"]) <= cpu(LIMIT_RANGE["max"]["cpu"])
                assert memory(resources["limits"]["memory"]) <= memory(LIMIT_RANGE["max"]["memory"])
                assert cpu(resources["requests"]["cpu"]) >= cpu(LIMIT_RANGE["min"]["cpu"])
                requested_cpu += replicas * cpu(resources["requests"]["cpu"])
                requested_memory += replicas * memory(resources["requests"]["memory"])

    quota = QUOTAS[tier]
    assert requested_cpu <= cpu(quota["requests.cpu"])
    assert requested_memory <= memory(quota["requests.memory"])
    assert pods <= int(quota["pods"])


def test_ingress_backends_and_class_match_what_the_kubernetes_driver_routes_to(helm):
    spec = make_spec("PROFESSIONAL")
    kube = KubernetesClusterDriver()
    services = {o["metadata"]["name"]: o for o in helm.render(spec, "core", "core-services", {})
                if o["kind"] == "Service"}
    for service in HOST_BACKENDS.values():
        assert [p["port"] for p in services[service]["spec"]["ports"]] == [80]

    (ingress_class,) = [o for o in helm.render(spec, "ingress", "ingress-controller", {})
                        if o["kind"] == "IngressClass"]
    assert ingress_class["metadata"]["name"] == kube.ingress_class(spec) == "tenant-acme"


def test_tier_profiles_scale_the_releases(helm):
    def replicas(tier):
        return {o["metadata"]["name"]: o["spec"]["replicas"]
                for o in helm.render(make_spec(tier), "core", "core-services", {}) if o["kind"] == "Deployment"}

    assert set(replicas("FREE").values()) == {1}
    assert set(replicas("PROFESSIONAL").values()) == {2}
    assert set(replicas("ENTERPRISE").values()) == {3}


def test_values_layer_platform_tenant_caller_and_custom_config():
    helm = HelmReleaseDriver(platform_values={"database": {"host": "pg.data.internal"}, "image": {"tag": "1.5.0"}})
    spec = make_spec("ENTERPRISE")
    # What the step layer passes: the tenant block, the hosts, and the tenant's custom configuration.
    values = {"tenant": {"slug": "acme", "tier": "ENTERPRISE", "id": spec.tenant_id}, "hosts": spec.hosts,
              "custom": {"image": {"tag": "2.1.0"}, "settings": {"sso": "okta"}}}

    objects = helm.render(spec, "acme-core", "core-services", values)

    images = {c["image"] for _, pod in pod_templates(objects) for c in pod["containers"]}
    assert images == {"ghcr.io/matih/matih-api:2.1.0", "ghcr.io/matih/matih-web:2.1.0", "ghcr.io/matih/matih-bi:2.1.0"}
    (config,) = [o for o in objects if o["kind"] == "ConfigMap"]
    assert json.loads(config["data"]["settings.json"]) == {"sso": "okta"}
    env = {e["name"]: e for _, pod in pod_templates(objects) for e in pod["containers"][0]["env"]}
    assert env["PGHOST"]["value"] == "pg.data.internal"
    # The database credentials come from the Secret SETUP_DATABASE writes, by the keys it writes.
    assert {env[name]["valueFrom"]["secretKeyRef"]["key"] for name in ("PGUSER", "PGPASSWORD", "PGDATABASE",
                                                                        "MATIH_DB_SCHEMA")} == {
        "username", "password", "database", "schema"}
    assert {env["PGPASSWORD"]["valueFrom"]["secretKeyRef"]["name"]} == {"tenant-database"}


def test_monitoring_ships_prometheus_rules_and_a_grafana_dashboard_per_tenant(helm):
    import yaml

    objects = {o["metadata"]["name"]: o for o in helm.render(make_spec("PROFESSIONAL"), "monitoring", "monitoring",
                                                             {"rules": {"prometheusOperator": True}})}
    rules = yaml.safe_load(objects["tenant-prometheus-rules"]["data"]["tenant-acme.rules.yaml"])
    alerts = {rule["alert"]: rule for rule in rules["groups"][0]["rules"]}
    assert set(alerts) == {"TenantPodCrashLooping", "TenantDeploymentUnavailable",
                           "TenantQuotaNearlyExhausted", "TenantHighErrorRate"}
    assert 'namespace="tenant-acme"' in alerts["TenantPodCrashLooping"]["expr"]
    assert objects["tenant-prometheus-rules"]["metadata"]["labels"]["prometheus_rule"] == "1"

    dashboard = json.loads(objects["tenant-grafana-dashboard"]["data"]["tenant-acme.json"])
    assert dashboard["uid"] == "matih-tenant-acme"
    assert all('namespace="tenant-acme"' in p["targets"][0]["expr"] for p in dashboard["panels"])
    assert objects["tenant-grafana-dashboard"]["metadata"]["labels"]["grafana_dashboard"] == "1"

    # With the Prometheus Operator, the same groups as a PrometheusRule (a CRD: no
    # built-in schema to validate against, so its content is compared instead).
    operator_rule = objects["tenant-rules"]
    assert operator_rule["kind"] == "PrometheusRule"
    assert operator_rule["spec"] == rules
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        kubernetes_validate.validate(operator_rule, KUBE_VERSION, strict=True)


def test_unknown_tier_fails_the_values_schema_in_lint_and_render(helm):
    spec = make_spec("FREE")
    broken = {"tenant": {"tier": "PLATINUM"}}
    for chart in CHARTS:  # values.schema.json of every chart
        assert any("/tenant/tier" in finding for finding in helm.lint(spec, chart, broken))
        with pytest.raises(PermanentInfraError) as caught:
            helm.render(spec, "release", chart, broken)
        assert "value must be one of 'FREE', 'PROFESSIONAL', 'ENTERPRISE'" in caught.value.provider_message


def test_unknown_chart_is_permanent(helm):
    with pytest.raises(PermanentInfraError):
        helm.render(make_spec(), "x", "no-such-chart", {})


# --- releases -------------------------------------------------------------------------

def test_install_on_an_unreachable_cluster_is_transient():
    driver = HelmReleaseDriver(default_cluster=ClusterRef("gone", "http://127.0.0.1:9"), timeout=5)
    with pytest.raises(TransientInfraError) as caught:
        driver.install(make_spec(), "core", "core-services", {})
    assert "connection refused" in caught.value.provider_message
    with pytest.raises(TransientInfraError):
        driver.uninstall(make_spec(), "core")


STAND_IN_HELM = """#!{python}
import json, os, sys
args = sys.argv[1:]
with open(os.environ["HELM_STAND_IN_LOG"], "a") as log:
    values = json.load(open(args[args.index("--values") + 1])) if "--values" in args else None
    log.write(json.dumps({{"args": args, "values": values}}) + "\\n")
failure = os.environ.get("HELM_STAND_IN_FAIL")
if failure:
    sys.stderr.write(failure + "\\n")
    sys.exit(1)
if args[0] == "upgrade":
    print(json.dumps({{"name": args[1], "version": 3, "info": {{"status": "deployed"}},
                      "chart": {{"metadata": {{"version": "0.1.0"}}}}}}))
if args[0] == "list":
    print(json.dumps([{{"name": "acme-core", "namespace": "tenant-acme", "revision": "3", "status": "deployed"}},
                      {{"name": "acme-monitoring", "namespace": "tenant-acme", "revision": "1", "status": "failed"}}]))
"""


@pytest.fixture
def stand_in_helm(tmp_path, monkeypatch):
    binary = tmp_path / "helm"
    binary.write_text(STAND_IN_HELM.format(python=sys.executable))
    binary.chmod(binary.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv("HELM_STAND_IN_LOG", str(log))

    def calls():
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    return str(binary), calls


def test_cli_mode_runs_upgrade_install_with_the_tenant_values(stand_in_helm, tmp_path):
    binary, calls = stand_in_helm
    kubeconfig = tmp_path / "kubeconfig"
    spec = make_spec("ENTERPRISE", cluster=ClusterRef("aks-acme", credentials_ref=str(kubeconfig)))
    driver = HelmReleaseDriver(mode="cli", helm_bin=binary, timeout=300)

    result = driver.install(spec, "core", "core-services", {"image": {"tag": "2.0.0"}})
    driver.uninstall(spec, "core")

    assert result == {"release": "core", "namespace": "tenant-acme", "chart": "core-services",
                      "revision": 3, "status": "deployed", "chartVersion": "0.1.0",
                      "resources": [{"kind": "HelmRelease", "name": "tenant-acme/core", "location": "aks-acme"}]}
    install, uninstall = calls()
    args = install["args"]
    assert args[:4] == ["upgrade", "core", driver.chart_path("core-services").as_posix(), "--install"]
    assert args[args.index("--namespace") + 1] == "tenant-acme"
    assert args[args.index("--kubeconfig") + 1] == str(kubeconfig)
    assert args[args.index("--timeout") + 1] == "300s" and "--wait" in args
    assert install["values"]["tenant"] == {"id": spec.tenant_id, "slug": "acme", "tier": "ENTERPRISE",
                                           "domain": "acme.matih.ai"}
    assert install["values"]["image"] == {"tag": "2.0.0"}
    assert uninstall["args"][:2] == ["uninstall", "core"] and "--ignore-not-found" in uninstall["args"]


@pytest.mark.parametrize("stderr,error", [
    ("Error: UPGRADE FAILED: another operation (install/upgrade/rollback) is in progress", TransientInfraError),
    ("Error: context deadline exceeded", TransientInfraError),
    ("Error: INSTALLATION FAILED: chart requires kubeVersion: >=1.99.0", PermanentInfraError),
])
def test_cli_failures_are_classified(stand_in_helm, monkeypatch, stderr, error):
    binary, _ = stand_in_helm
    monkeypatch.setenv("HELM_STAND_IN_FAIL", stderr)
    driver = HelmReleaseDriver(mode="cli", helm_bin=binary)
    with pytest.raises(error) as caught:
        driver.install(make_spec(), "core", "core-services", {})
    assert stderr in caught.value.provider_message


def test_cli_mode_without_a_binary_is_permanent(tmp_path):
    driver = HelmReleaseDriver(mode="cli", helm_bin=os.fspath(tmp_path / "absent-helm"))
    with pytest.raises(PermanentInfraError):
        driver.install(make_spec(), "core", "core-services", {})


# --- releases through Helm's engine against the fake API server ---------------------------

@pytest.fixture
def cluster(api):
    """The fake API server (conftest's), named for what Helm sees: the cluster."""
    return api


@pytest.fixture
def on_cluster(cluster):
    """A Helm driver on the fake cluster, and the tenant's namespace made by the Kubernetes driver."""
    ref = ClusterRef("shared-1", cluster.url)
    kube = KubernetesClusterDriver(ref, request_timeout=5)
    kube.ensure_namespace(make_spec("PROFESSIONAL"))
    # wait=False: nothing runs in the fake cluster, so nothing would ever become ready.
    return HelmReleaseDriver(default_cluster=ref, wait=False, timeout=30)


def release_objects(cluster) -> set[tuple[str, str, str]]:
    baseline = {("namespaces", "", "tenant-acme"), ("serviceaccounts", "tenant-acme", "tenant-admin"),
                ("roles", "tenant-acme", "tenant-admin"), ("rolebindings", "tenant-acme", "tenant-admin")}
    return set(cluster.objects) - baseline


def test_release_is_installed_upgraded_and_uninstalled_by_helms_engine(on_cluster, cluster):
    spec = make_spec("PROFESSIONAL")

    first = on_cluster.install(spec, "acme-core", "core-services", {})
    second = on_cluster.install(spec, "acme-core", "core-services", {"image": {"tag": "1.1.0"}})

    assert (first["status"], first["revision"]) == ("deployed", 1)
    assert (second["status"], second["revision"]) == ("deployed", 2)
    deployment = cluster.get("deployments", "tenant-acme", "core-api")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "ghcr.io/matih/matih-api:1.1.0"
    assert deployment["metadata"]["annotations"]["meta.helm.sh/release-name"] == "acme-core"
    # Helm's release records are Secrets in the tenant's namespace, as on a real cluster.
    records = {name: cluster.get("secrets", "tenant-acme", name)["metadata"]["labels"]
               for name in cluster.names("secrets", "tenant-acme")}
    assert records["sh.helm.release.v1.acme-core.v2"]["status"] == "deployed"
    assert records["sh.helm.release.v1.acme-core.v1"]["status"] == "superseded"
    # Server-side apply, every object schema-valid (the fake answers 422 otherwise).
    assert ("deployments", "tenant-acme", "core-web") in cluster.applied

    on_cluster.uninstall(spec, "acme-core")
    on_cluster.uninstall(spec, "acme-core")  # a repeated compensation

    assert release_objects(cluster) == set()


def test_every_release_of_a_professional_tenant_installs_and_uninstalls(on_cluster, cluster):
    spec = make_spec("PROFESSIONAL")
    for chart in CHARTS:
        assert on_cluster.install(spec, f"acme-{chart}", chart, {})["status"] == "deployed"
    kinds = {plural for plural, _, _ in release_objects(cluster)}
    assert {"deployments", "statefulsets", "services", "configmaps", "ingressclasses", "clusterroles"} <= kinds

    for chart in reversed(CHARTS):
        on_cluster.uninstall(spec, f"acme-{chart}")
    assert release_objects(cluster) == set()


def test_a_first_install_that_failed_is_replaced_on_retry(on_cluster, cluster):
    from tests.drivers.fake_kube import Fault

    spec = make_spec("PROFESSIONAL")
    cluster.inject(Fault("PATCH", "/deployments/core-web", 500, "InternalError", "etcdserver: request timed out"))

    with pytest.raises(TransientInfraError) as caught:
        on_cluster.install(spec, "acme-core", "core-services", {})
    assert "etcdserver" in caught.value.provider_message
    labels = cluster.get("secrets", "tenant-acme", "sh.helm.release.v1.acme-core.v1")["metadata"]["labels"]
    assert labels["status"] == "failed"

    retried = on_cluster.install(spec, "acme-core", "core-services", {})
    assert (retried["status"], retried["revision"]) == ("deployed", 1)
    assert cluster.get("deployments", "tenant-acme", "core-web") is not None


def test_cli_mode_lists_the_releases_of_the_namespace_in_every_state(stand_in_helm):
    binary, calls = stand_in_helm
    driver = HelmReleaseDriver(mode="cli", helm_bin=binary, default_cluster=ClusterRef("shared-1"))

    assert driver.releases(make_spec()) == ["acme-core", "acme-monitoring"]
    assert driver.leftovers(make_spec())[0] == {"kind": "HelmRelease", "name": "tenant-acme/acme-core",
                                                "location": "shared-1"}
    args = calls()[0]["args"]
    assert args[:2] == ["list", "--namespace"] and "--all" in args and args[args.index("--output") + 1] == "json"


def stored_release(cluster, release: str, revision: int) -> dict:
    """The release record Helm keeps in a Secret: base64 (the API) of base64 of gzipped JSON (Helm's storage)."""
    import base64
    import gzip

    secret = cluster.get("secrets", "tenant-acme", f"sh.helm.release.v1.{release}.v{revision}")
    return json.loads(gzip.decompress(base64.b64decode(base64.b64decode(secret["data"]["release"]))))


def test_installing_with_new_values_upgrades_the_release(on_cluster, cluster):
    spec = make_spec("PROFESSIONAL")
    first = on_cluster.install(spec, "acme-data", "data-services", {"custom": {"tiers": {"PROFESSIONAL": {
        "queryReplicas": 2}}}})

    second = on_cluster.install(spec, "acme-data", "data-services", {"custom": {"tiers": {"PROFESSIONAL": {
        "queryReplicas": 4}}}})

    assert (first["revision"], second["revision"]) == (1, 2)
    assert second["resources"] == [{"kind": "HelmRelease", "name": "tenant-acme/acme-data", "location": "shared-1"}]
    assert cluster.get("deployments", "tenant-acme", "data-query")["spec"]["replicas"] == 4
    assert stored_release(cluster, "acme-data", 1)["config"]["tiers"]["PROFESSIONAL"]["queryReplicas"] == 2
    assert stored_release(cluster, "acme-data", 2)["config"]["tiers"]["PROFESSIONAL"]["queryReplicas"] == 4
    assert stored_release(cluster, "acme-data", 2)["info"]["status"] == "deployed"
    assert on_cluster.releases(spec) == ["acme-data"]  # one release, two revisions


def test_releases_and_the_leftover_scan_read_the_cluster(on_cluster, cluster):
    spec = make_spec("PROFESSIONAL")
    on_cluster.install(spec, "acme-core", "core-services", {})
    on_cluster.install(spec, "acme-monitoring", "monitoring", {})
    # Planted: a release someone installed by hand in the tenant's namespace.
    HelmReleaseDriver(default_cluster=ClusterRef("shared-1", cluster.url), wait=False).install(
        spec, "hand-made", "ingress-controller", {})

    assert on_cluster.releases(spec) == ["acme-core", "acme-monitoring", "hand-made"]
    on_cluster.uninstall(spec, "acme-core")
    on_cluster.uninstall(spec, "acme-monitoring")
    assert on_cluster.leftovers(spec) == [{"kind": "HelmRelease", "name": "tenant-acme/hand-made",
                                           "location": "shared-1"}]

    on_cluster.uninstall(spec, "hand-made")
    assert on_cluster.leftovers(spec) == []
    assert on_cluster.releases(make_spec(slug="nobody")) == []  # a namespace that does not exist: none
