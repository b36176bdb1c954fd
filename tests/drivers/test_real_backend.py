"""The real backend built from settings, driven through a tenant's life against local stand-ins.

The Kubernetes API is the fake API server, Azure (Entra ID and ARM DNS) are the
HTTPS stubs, PostgreSQL is real. Helm releases are rendered (installing them
needs a real API server); everything else is created for real, then
compensated in reverse, leaving nothing behind.
"""
from __future__ import annotations

import uuid

import psycopg
import pytest

from deploy.database import tenant_identifier
from deploy.errors import TransientInfraError
from deploy.real import RealCloud, real_backend
from tests.drivers.conftest import make_spec
from tests.drivers.fake_arm import FakeArmDns
from tests.drivers.fake_entra import FakeEntra
from tests.drivers.fake_kube import FakeKubeApi

SUB, RG = "11111111-2222-3333-4444-555555555555", "rg-matih-dns"
AZ_TENANT, CLIENT, SECRET = "72f988bf-0000-0000-0000-0000000000aa", "matih-platform", "platform-secret"


@pytest.fixture
def cloud(tmp_path, settings):
    kube = FakeKubeApi().start()
    arm = FakeArmDns(tmp_path).start()
    arm.add_zone(SUB, RG, "matih.ai")
    entra_dir = tmp_path / "entra"
    entra_dir.mkdir()
    entra = FakeEntra(entra_dir, tenant_id=AZ_TENANT, client_id=CLIENT, client_secret=SECRET).start()
    bundle = tmp_path / "ca-bundle.pem"
    bundle.write_bytes(arm.cert_path.read_bytes() + entra.cert_path.read_bytes())

    settings.MATIH_KUBE_API = kube.url
    settings.MATIH_KUBECONFIG = ""
    settings.MATIH_AZURE_ARM_ENDPOINT = arm.url
    settings.MATIH_AZURE_AUTHORITY = entra.authority
    settings.MATIH_AZURE_CA_BUNDLE = str(bundle)
    settings.MATIH_AZURE_TENANT_ID, settings.MATIH_AZURE_CLIENT_ID = AZ_TENANT, CLIENT
    settings.MATIH_AZURE_CLIENT_SECRET = SECRET
    settings.MATIH_AZURE_SUBSCRIPTION_ID, settings.MATIH_AZURE_RESOURCE_GROUP = SUB, RG
    settings.MATIH_TERRAFORM_WORKDIR = str(tmp_path / "terraform")
    settings.MATIH_DATAPLANE_DATABASE_URL = ""
    yield {"kube": kube, "arm": arm, "entra": entra, "settings": settings}
    for server in (kube, arm, entra):
        server.stop()


def test_settings_choose_the_real_drivers(cloud):
    settings = cloud["settings"]
    backend = real_backend(settings)

    assert isinstance(backend, RealCloud) and backend.name == "azure"
    assert real_backend(settings) is backend  # one set of clients per process and configuration
    assert backend.kubernetes.api_client(None).configuration.host == cloud["kube"].url
    assert backend.database.url == settings.DATABASE_URL  # the data plane defaults to the main server
    assert backend.helm.mode == "sdk"
    assert backend.terraform.default_variables == {"subscription_id": SUB}
    backend.before_step("CREATE_NAMESPACE", 1, 5.0)  # real systems need no simulated delay


def test_a_professional_tenant_is_provisioned_then_compensated_leaving_nothing_behind(cloud):
    backend = real_backend(cloud["settings"])
    kube, arm = cloud["kube"], cloud["arm"]
    spec = make_spec("PROFESSIONAL", slug=f"e2e{uuid.uuid4().hex[:8]}")
    ingress_ip = "20.51.7.10"

    # The DEPLOYING_SERVICES work, the way the steps call the drivers.
    backend.kubernetes.ensure_namespace(spec)
    backend.kubernetes.ensure_quotas(spec)
    backend.kubernetes.ensure_network_policies(spec)
    created = dict(backend.database.ensure_tenant_database(spec))
    password = created.pop("password")
    backend.kubernetes.ensure_secret(spec, "tenant-database", {
        "username": created["role"], "password": password, "database": created["database"],
        "schema": created["schema"]})
    releases = {chart: backend.helm.render(spec, f"{spec.slug}-{chart}", chart, {})
                for chart in ("core-services", "data-services", "ingress-controller", "monitoring")}
    zone = backend.dns.ensure_zone(spec, ingress_ip)
    backend.kubernetes.ensure_ingress(spec)
    backend.observability.ensure_pipelines(spec)

    assert kube.names("namespaces") == [spec.namespace]
    assert set(kube.names("configmaps", spec.namespace)) == {"tenant-log-pipeline", "tenant-trace-pipeline"}
    assert kube.get("secrets", spec.namespace, "tenant-database") is not None
    assert all(objects for objects in releases.values())
    assert zone["nameServers"] and ("NS", spec.slug) in arm.records("matih.ai")
    with psycopg.connect(cloud["settings"].DATABASE_URL, autocommit=True) as conn:
        assert conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (created["role"],)).fetchone()
    # Nothing runs in the fake cluster, so the tenant is not healthy yet: retry later.
    with pytest.raises(TransientInfraError):
        backend.verify.check(spec)

    # Rollback: the compensations in reverse order.
    backend.observability.delete_pipelines(spec)
    backend.kubernetes.delete_ingress(spec)
    backend.dns.delete_zone(spec)
    backend.kubernetes.delete_secret(spec, "tenant-database")
    backend.database.drop_tenant_database(spec)
    backend.kubernetes.delete_network_policies(spec)
    backend.kubernetes.delete_quotas(spec)
    backend.kubernetes.delete_namespace(spec)

    assert kube.objects == {}
    assert set(arm.zones) == {"matih.ai"}
    assert {key for key in arm.records("matih.ai")} == {("NS", "@"), ("SOA", "@")}
    with psycopg.connect(cloud["settings"].DATABASE_URL, autocommit=True) as conn:
        role = tenant_identifier(spec.slug)
        assert conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is None
        assert conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (role,)).fetchone() is None
    # The platform's DNS identity got its token from Entra ID (the client-credentials flow).
    assert any(method == "POST" for method, _, _ in cloud["entra"].requests)


def test_a_tenants_whole_life_on_the_real_backend_ends_with_nothing_left(cloud, tmp_path):
    """Provision, suspend, activate, deprovision (export, teardown, leftover scan), as the steps call the drivers."""
    settings = cloud["settings"]
    settings.MATIH_HELM_WAIT = False
    backend = real_backend(settings)
    kube, arm = cloud["kube"], cloud["arm"]
    spec = make_spec("PROFESSIONAL", slug=f"life{uuid.uuid4().hex[:8]}")
    inventory = []

    for result in (backend.kubernetes.ensure_namespace(spec), backend.kubernetes.ensure_quotas(spec),
                   backend.kubernetes.ensure_network_policies(spec), backend.database.ensure_tenant_database(spec),
                   backend.helm.install(spec, f"{spec.slug}-core", "core-services", {}),
                   backend.dns.ensure_zone(spec, "20.51.7.10"), backend.kubernetes.ensure_ingress(spec),
                   backend.observability.ensure_pipelines(spec)):
        inventory += result["resources"]
    assert {r["kind"] for r in inventory} >= {"Namespace", "ResourceQuota", "NetworkPolicy", "DatabaseRole",
                                              "DatabaseSchema", "HelmRelease", "DnsZone", "Ingress", "LogPipeline"}
    with psycopg.connect(settings.DATABASE_URL, autocommit=True) as conn:
        conn.execute(f'CREATE TABLE "{tenant_identifier(spec.slug)}".notes (v text)')
        conn.execute(f'INSERT INTO "{tenant_identifier(spec.slug)}".notes VALUES (\'kept in the export\')')

    # SUSPEND, then ACTIVATE.
    suspended = backend.kubernetes.scale_workloads(spec, 0)
    backend.kubernetes.patch_quota(spec, {"pods": "0"})
    backend.kubernetes.block_ingress(spec)
    assert set(backend.kubernetes.workloads(spec).values()) == {0}
    assert backend.kubernetes.ingress_state(spec)["blocked"]
    backend.kubernetes.unblock_ingress(spec)
    backend.kubernetes.restore_workloads(spec)
    backend.kubernetes.ensure_quotas(spec)
    assert backend.kubernetes.workloads(spec) == suspended["workloads"] == {"core-api": 2, "core-bi": 2,
                                                                            "core-web": 2}

    # DEPROVISION: export, teardown in reverse order, then ask every system what is left.
    exported = backend.database.export_tenant_data(spec, str(tmp_path / "exports"))
    assert "kept in the export" in open(exported["path"]).read()
    backend.observability.delete_pipelines(spec)
    backend.kubernetes.delete_ingress(spec)
    backend.dns.delete_zone(spec)
    backend.helm.uninstall(spec, f"{spec.slug}-core")
    backend.database.drop_tenant_database(spec)
    backend.kubernetes.delete_namespace(spec)

    def leftovers():
        return (backend.kubernetes.leftovers(spec) + backend.helm.leftovers(spec) + backend.dns.leftovers(spec)
                + backend.terraform.leftovers(spec) + backend.database.leftovers(spec))

    assert leftovers() == []
    assert kube.objects == {}
    # What the inventory never heard of is found all the same.
    kube.put("namespaces", "", {"apiVersion": "v1", "kind": "Namespace",
                                "metadata": {"name": f"{spec.slug}-old", "labels": {"matih.ai/tenant": spec.slug}}})
    arm.add_zone(SUB, RG, spec.dns_zone)
    assert leftovers() == [{"kind": "Namespace", "name": f"{spec.slug}-old", "location": "shared-1"},
                           {"kind": "DnsZone", "name": spec.dns_zone, "location": "matih.ai"}]
