"""A PROFESSIONAL tenant through the orchestrator and the step layer with MATIH_INFRA_BACKEND=azure.

The Kubernetes API is the fake API server (strict schema validation), Azure DNS the
HTTPS ARM stub, PostgreSQL is real. The engine's phase tasks run in this process
(tests/engine_local.py; the data-plane tests cover the Celery transport), following the
canvas exactly as a worker would. Nothing runs in the fake cluster, so the
connectivity check keeps failing: an operator rolls the job back, and nothing is
left in any of the three systems.
"""
from __future__ import annotations

import psycopg
import pytest

from deploy.database import tenant_identifier
from provisioning import services
from provisioning.models import ProvisioningJob, StepRun
from tests.engine_local import LocalCanvas
from tests.dataplane.helpers import register
from tests.drivers.test_real_backend import cloud  # noqa: F401  (the fixture)

pytestmark = pytest.mark.django_db(transaction=True)


def test_professional_tenant_on_the_real_backend_then_rolled_back_leaves_nothing(
        cloud, seeded, operator_client, monkeypatch):  # noqa: F811
    settings = cloud["settings"]
    settings.MATIH_INFRA_BACKEND = "azure"
    settings.MATIH_HELM_WAIT = False
    settings.MATIH_VERIFY_TIMEOUT = 0.5
    kube, arm = cloud["kube"], cloud["arm"]
    canvas = LocalCanvas(monkeypatch)

    tenant = register(operator_client, tier="PROFESSIONAL")
    slug = tenant["slug"]
    job = ProvisioningJob.objects.get(tenant_id=tenant["id"])
    canvas.run()

    job.refresh_from_db()
    steps = dict(StepRun.objects.filter(job=job).values_list("name", "status"))
    assert job.status == "RETRY_SCHEDULED", (job.status, job.error_message)
    assert "VERIFY_CONNECTIVITY" in job.error_message
    assert all(status == "SUCCEEDED" for name, status in steps.items() if name != "VERIFY_CONNECTIVITY"), steps
    namespace = f"tenant-{slug}"
    assert kube.names("namespaces") == [namespace]
    kinds = {plural for (plural, ns, _) in kube.objects if ns == namespace}
    assert {"resourcequotas", "limitranges", "networkpolicies", "ingresses", "secrets", "deployments"} <= kinds, kinds
    assert f"{slug}.matih.ai" in arm.zones and ("NS", slug) in arm.records("matih.ai")
    role = tenant_identifier(slug)
    with psycopg.connect(settings.DATABASE_URL, autocommit=True) as conn:
        assert conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]).fetchone()

    services.roll_back(job=job, actor="test")
    canvas.run()
    job.refresh_from_db()
    assert job.status == "FAILED"
    assert kube.objects == {}, sorted(kube.objects)
    assert set(arm.zones) == {"matih.ai"}
    assert {key for key in arm.records("matih.ai")} == {("NS", "@"), ("SOA", "@")}
    with psycopg.connect(settings.DATABASE_URL, autocommit=True) as conn:
        assert not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]).fetchone()
        assert not conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [role]).fetchone()
