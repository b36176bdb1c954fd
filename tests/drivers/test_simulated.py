"""The simulated cloud keeps real state: every lifecycle operation changes its rows as the real
system would change, its resources look like the real drivers', and its leftover scans find
what is there (planted rows included)."""
from __future__ import annotations

import hashlib
import os

import pytest

from deploy.backend import backend_for
from deploy.errors import PermanentInfraError, TransientInfraError
from deploy.interfaces import ClusterRef
from deploy.kubernetes import KubernetesClusterDriver
from deploy.models import SimulatedResource
from deploy.observability import ConfigMapPipelines
from deploy.simulated import SIMULATED_SERVER, SimulatedCloud
from tests.drivers.conftest import QUOTAS, make_spec
from tests.drivers.fake_kube import FakeKubeApi

pytestmark = pytest.mark.django_db

NS = "tenant-acme"


@pytest.fixture
def cloud():
    return SimulatedCloud(time_scale=0, shared_cluster="shared-1", tenant_id="t-42")


def provision(cloud, spec) -> None:
    cloud.kubernetes.ensure_namespace(spec)
    cloud.kubernetes.ensure_quotas(spec)
    cloud.kubernetes.ensure_network_policies(spec)
    cloud.helm.install(spec, "acme-core", "core-services", {})
    cloud.helm.install(spec, "acme-data", "data-services", {})
    cloud.kubernetes.ensure_ingress(spec)


def rows(**filters) -> list[tuple[str, str, str]]:
    return sorted(SimulatedResource.objects.filter(**filters).values_list("kind", "location", "name"))


# --- the same inventory as the real drivers ---------------------------------------------------------

@pytest.mark.parametrize("tier", ["FREE", "PROFESSIONAL"])
def test_the_simulated_cloud_reports_the_resources_the_real_drivers_report(cloud, tier):
    spec = make_spec(tier)
    api = FakeKubeApi().start()
    try:
        real = KubernetesClusterDriver(ClusterRef("shared-1", api.url), request_timeout=2)
        for operation in ("ensure_namespace", "ensure_quotas", "ensure_network_policies", "ensure_ingress"):
            expected = getattr(real, operation)(spec)["resources"]
            assert getattr(cloud.kubernetes, operation)(spec)["resources"] == expected, operation
        assert (cloud.kubernetes.ensure_secret(spec, "tenant-database", {"password": "p"})["resources"]
                == real.ensure_secret(spec, "tenant-database", {"password": "p"})["resources"])
        assert (cloud.observability.ensure_pipelines(spec)["resources"]
                == ConfigMapPipelines(real).ensure_pipelines(spec)["resources"])
        real.close()
    finally:
        api.stop()


def test_a_tenant_has_a_namespace_on_the_shared_and_the_dedicated_cluster_at_once(cloud):
    shared, dedicated = make_spec("PROFESSIONAL"), make_spec("ENTERPRISE", cluster=ClusterRef("aks-acme"))
    cloud.kubernetes.ensure_namespace(shared)
    cloud.kubernetes.ensure_namespace(dedicated)
    assert rows(kind="Namespace") == [("Namespace", "aks-acme", NS), ("Namespace", "shared-1", NS)]

    cloud.kubernetes.delete_namespace(shared)  # the decommissioning of the shared half

    assert rows(kind="Namespace") == [("Namespace", "aks-acme", NS)]
    assert {location for _, location, _ in rows(owner="acme")} == {"aks-acme"}


# --- suspension and activation ------------------------------------------------------------------------

def test_suspension_and_activation_change_the_state_verification_reads(cloud, spec):
    provision(cloud, spec)
    assert cloud.kubernetes.workloads(spec) == {"core-api": 2, "core-bi": 2, "core-web": 2, "data-query": 2,
                                                "data-cache": 1}  # the charts' PROFESSIONAL profile
    cloud.verify.check(spec)

    suspended = cloud.kubernetes.scale_workloads(spec, 0)
    assert cloud.kubernetes.scale_workloads(spec, 0) == suspended  # a redelivery keeps the replicas
    quota = cloud.kubernetes.patch_quota(spec, {"pods": "0"})
    blocked = cloud.kubernetes.block_ingress(spec)

    assert suspended["workloads"]["core-api"] == 2 and set(cloud.kubernetes.workloads(spec).values()) == {0}
    assert quota["previous"] == {"pods": "50"}
    assert blocked["resources"] == [{"kind": "Service", "name": f"{NS}/tenant-suspended", "location": "shared-1"}]
    assert cloud.kubernetes.ingress_state(spec)["blocked"]
    with pytest.raises(TransientInfraError, match="scaled to zero"):
        cloud.verify.check(spec)

    cloud.kubernetes.unblock_ingress(spec)
    with pytest.raises(TransientInfraError, match="scaled to zero"):
        cloud.verify.check(spec)
    restored = cloud.kubernetes.restore_workloads(spec)
    cloud.kubernetes.ensure_quotas(spec)

    assert restored["workloads"] == suspended["workloads"]
    assert cloud.kubernetes.workloads(spec)["core-web"] == 2
    assert SimulatedResource.objects.get(kind="ResourceQuota").data["hard"] == QUOTAS["PROFESSIONAL"]
    assert rows(kind="Service") == []
    assert cloud.verify.check(spec)["healthy"]


def test_a_blocked_ingress_fails_verification(cloud, spec):
    provision(cloud, spec)
    cloud.kubernetes.block_ingress(spec)
    with pytest.raises(TransientInfraError, match="503"):
        cloud.verify.check(spec)


def test_patching_a_missing_quota_is_permanent(cloud, spec):
    cloud.kubernetes.ensure_namespace(spec)
    with pytest.raises(PermanentInfraError):
        cloud.kubernetes.patch_quota(spec, {"pods": "0"})



def test_a_namespace_is_its_names_prefix_and_not_a_neighbours(cloud):
    """tenant-acme/ is not tenant-acme2/ nor tenant-acme-x/: verification and the policy pruning
    read the tenant's own namespace only."""
    spec = make_spec("PROFESSIONAL")
    provision(cloud, spec)
    for neighbour in ("acme2", "acme-x", "acm"):
        other = make_spec("FREE", slug=neighbour)
        provision(cloud, other)
        cloud.kubernetes.scale_workloads(other, 0)

    assert cloud.verify.check(spec)["healthy"]
    assert cloud.kubernetes.ensure_network_policies(spec)["pruned"] == []
    assert len(rows(kind="NetworkPolicy")) == 5 + 3 * 4
    with pytest.raises(TransientInfraError, match="scaled to zero in tenant-acme2: core-api, core-bi, core-web"):
        cloud.verify.check(make_spec("FREE", slug="acme2"))

# --- tier change and Helm ------------------------------------------------------------------------------------

def test_a_tier_change_prunes_the_external_policy_and_switches_the_ingress_class(cloud):
    professional, free = make_spec("PROFESSIONAL"), make_spec("FREE")
    provision(cloud, professional)
    assert cloud.kubernetes.ingress_state(professional)["ingressClass"] == NS

    result = cloud.kubernetes.ensure_network_policies(free)
    cloud.kubernetes.ensure_ingress(free)

    assert result["pruned"] == [f"NetworkPolicy/{NS}/allow-external-to-ingress-controller"]
    assert len(rows(kind="NetworkPolicy")) == 4
    assert cloud.kubernetes.ingress_state(free)["ingressClass"] == "nginx"


def test_installing_with_new_values_is_a_new_revision_and_uninstall_takes_the_workloads(cloud, spec):
    cloud.kubernetes.ensure_namespace(spec)
    first = cloud.helm.install(spec, "acme-data", "data-services", {})
    same = cloud.helm.install(spec, "acme-data", "data-services", {})  # a redelivery
    upgraded = cloud.helm.install(spec, "acme-data", "data-services",
                                  {"custom": {"tiers": {"PROFESSIONAL": {"queryReplicas": 5}}}})

    assert (first["revision"], same["revision"], upgraded["revision"]) == (1, 1, 2)
    assert cloud.kubernetes.workloads(spec) == {"data-query": 5, "data-cache": 1}
    assert cloud.helm.releases(spec) == ["acme-data"]

    cloud.helm.uninstall(spec, "acme-data")
    cloud.helm.uninstall(spec, "acme-data")
    assert cloud.kubernetes.workloads(spec) == {} and cloud.helm.releases(spec) == []


# --- DNS and Terraform -----------------------------------------------------------------------------------------

def test_the_cut_over_repoints_the_records_and_delete_removes_everything(cloud, spec):
    first = cloud.dns.ensure_zone(spec, "203.0.113.10")
    cloud.dns.ensure_zone(spec, "198.51.100.7")

    assert [r["kind"] for r in first["resources"]] == ["DnsZone"] + ["DnsRecord"] * 4 + ["DnsDelegation"]
    assert cloud.dns.zone_state(spec) == {"zone": True, "delegation": True,
                                          "a": {label: ["198.51.100.7"] for label in ("@", "*", "api", "bi")}}
    assert len(rows(kind="DnsRecord")) == 4  # replaced, not added

    cloud.dns.delete_zone(spec)
    assert cloud.dns.zone_state(spec) == {"zone": False, "delegation": False, "a": {}}
    assert cloud.dns.leftovers(spec) == [] and rows(owner="acme") == []


def test_terraform_apply_destroy_and_the_leftover_scan(cloud):
    spec = make_spec("ENTERPRISE")
    outputs = cloud.terraform.apply(spec, {"node_count": 3})
    workspace = outputs["resources"][0]["location"]

    assert outputs["resources"] == [{"kind": "TerraformWorkspace", "name": "tenant-acme", "location": workspace},
                                    {"kind": "AksCluster", "name": "aks-acme", "location": "eastus"}]
    assert [r["kind"] for r in cloud.terraform.leftovers(spec)] == ["TerraformWorkspace", "TerraformState",
                                                                   "AksCluster"]
    cloud.terraform.destroy(spec, {})
    cloud.terraform.destroy(spec, {})
    assert cloud.terraform.leftovers(spec) == []


# --- the database --------------------------------------------------------------------------------------------------

def test_the_data_migration_copies_verifies_and_undoes_like_the_real_driver(cloud, tmp_path):
    shared, dedicated = make_spec("PROFESSIONAL"), make_spec("ENTERPRISE")
    cloud.database.ensure_tenant_database(shared)
    cloud.database.put_rows(shared, "reports", [{"id": i, "title": f"report {i}"} for i in range(12)])
    cloud.database.ensure_tenant_database(dedicated)
    cloud.database.ensure_tenant_database(shared)  # a redelivered setup does not empty the tables

    copied = cloud.database.copy_to_dedicated(shared, dedicated)

    assert copied["tables"]["reports"]["rows"] == 12
    assert cloud.database.table_fingerprints(dedicated) == cloud.database.table_fingerprints(shared)
    cloud.database.put_rows(dedicated, "reports", [{"id": 0, "title": "tampered"}])
    with pytest.raises(PermanentInfraError, match="reports does not match"):
        cloud.database.verify_copy(shared, dedicated)

    cloud.database.drop_dedicated_copy(dedicated)
    assert cloud.database.table_fingerprints(dedicated) == {}
    cloud.database.drop_tenant_database(dedicated)  # undoing the upgrade keeps the role for the shared half
    assert [r["kind"] for r in cloud.database.leftovers(shared)] == ["DatabaseRole", "DatabaseSchema"]
    assert cloud.database.table_fingerprints(shared)["reports"]["rows"] == 12


def test_the_export_is_a_real_file_with_its_checksum(cloud, spec, tmp_path):
    cloud.database.ensure_tenant_database(spec)
    cloud.database.put_rows(spec, "events", [{"n": 1}, {"n": 2}])

    exported = cloud.database.export_tenant_data(spec, str(tmp_path / "exports"))

    content = open(exported["path"], "rb").read()
    assert exported["sha256"] == hashlib.sha256(content).hexdigest() and exported["bytes"] == len(content)
    assert b"tenant_acme.events: 2 rows" in content
    assert os.stat(exported["path"]).st_mode & 0o777 == 0o600


def test_after_the_cut_over_the_shared_schema_goes_and_deprovisioning_takes_the_role(cloud):
    shared, dedicated = make_spec("PROFESSIONAL"), make_spec("ENTERPRISE")
    cloud.database.ensure_tenant_database(shared)
    created = cloud.database.ensure_tenant_database(dedicated)
    assert [r["location"] for r in created["resources"]] == [SIMULATED_SERVER, SIMULATED_SERVER,
                                                             f"{SIMULATED_SERVER}/tenant_acme"]

    cloud.database.drop_shared_schema(shared)
    assert [r["kind"] for r in cloud.database.leftovers(dedicated)] == ["DatabaseRole", "Database"]
    cloud.database.drop_tenant_database(dedicated)
    assert cloud.database.leftovers(dedicated) == []


# --- the leftover scan finds what nobody recorded -------------------------------------------------------------------

def test_the_leftover_scans_find_planted_resources(cloud):
    spec = make_spec("ENTERPRISE", cluster=ClusterRef("aks-acme"))
    planted = [
        ("Namespace", "aks-acme", "acme-sandbox", {"labels": {"matih.ai/tenant": "acme"}}),
        ("HelmRelease", "aks-acme", f"{NS}/hand-made", {}),
        ("DnsZone", "matih.ai", "acme.matih.ai", {}),
        ("DatabaseRole", SIMULATED_SERVER, "tenant_acme", {}),
        ("Namespace", "aks-acme", "tenant-other", {"labels": {"matih.ai/tenant": "other"}}),  # not ours
    ]
    for kind, location, name, data in planted:
        SimulatedResource.objects.create(kind=kind, location=location, name=name, owner="someone", data=data)

    assert cloud.kubernetes.leftovers(spec) == [{"kind": "Namespace", "name": "acme-sandbox", "location": "aks-acme"}]
    assert cloud.helm.leftovers(spec) == [{"kind": "HelmRelease", "name": f"{NS}/hand-made", "location": "aks-acme"}]
    assert cloud.dns.leftovers(spec) == [{"kind": "DnsZone", "name": "acme.matih.ai", "location": "matih.ai"}]
    assert cloud.database.leftovers(spec) == [{"kind": "DatabaseRole", "name": "tenant_acme",
                                               "location": SIMULATED_SERVER}]


# --- faults tell the truth ---------------------------------------------------------------------------------------------

def test_a_permanent_fault_says_how_to_retry_without_it():
    cloud = SimulatedCloud(time_scale=0, faults={"SETUP_DATABASE": {"mode": "permanent"}}, tenant_id="t-42")
    with pytest.raises(PermanentInfraError) as caught:
        cloud.before_step("SETUP_DATABASE", 1, 5)
    assert "POST /api/v1/tenants/t-42/provisioning/retry" in caught.value.hint
    assert '{"simulate": {"faults": {}}}' in caught.value.hint
    assert "registration" not in caught.value.hint


def test_a_transient_fault_longer_than_the_retry_budget_says_the_job_will_roll_back():
    outlasting = SimulatedCloud(time_scale=0, faults={"CREATE_DNS_ZONE": {"mode": "transient", "times": 5}},
                                max_retries=3)
    with pytest.raises(TransientInfraError) as caught:
        outlasting.before_step("CREATE_DNS_ZONE", 1, 5)
    assert "run out of retries and roll back" in caught.value.hint

    clearing = SimulatedCloud(time_scale=0, faults={"CREATE_DNS_ZONE": {"mode": "transient", "times": 2}},
                              max_retries=3)
    with pytest.raises(TransientInfraError) as caught:
        clearing.before_step("CREATE_DNS_ZONE", 2, 5)
    assert "clears on its own" in caught.value.hint
    clearing.before_step("CREATE_DNS_ZONE", 3, 5)  # the third attempt succeeds


def test_backend_for_gives_the_simulated_cloud_the_jobs_retry_budget(settings):
    settings.MATIH_INFRA_BACKEND = "simulated"
    settings.MATIH_MAX_RETRIES = 7
    assert backend_for(simulate={}).max_retries == 7
    assert backend_for(simulate={}, max_retries=1).max_retries == 1


def test_the_state_lock_has_one_holder(cloud):
    assert cloud.lock.acquire("matih:terraform-state:tenant-acme", "job-1", 60)
    assert not cloud.lock.acquire("matih:terraform-state:tenant-acme", "job-2", 60)
    assert cloud.lock.holder("matih:terraform-state:tenant-acme") == "job-1"
    cloud.lock.release("matih:terraform-state:tenant-acme", "job-1")
    assert cloud.lock.holder("matih:terraform-state:tenant-acme") is None
