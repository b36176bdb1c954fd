"""Fixtures of the driver tests: tenant specs as the step layer computes them."""
from __future__ import annotations

import uuid

import pytest

from deploy.interfaces import ClusterRef, TenantSpec
from tests.drivers.fake_kube import FakeKubeApi

# REFERENCE.md: ResourceQuota per tier (ENTERPRISE: PROFESSIONAL doubled) and the LimitRange.
QUOTAS = {
    "FREE": {"requests.cpu": "2", "limits.cpu": "4", "requests.memory": "4Gi", "limits.memory": "8Gi",
             "pods": "20", "services": "10", "persistentvolumeclaims": "5"},
    "PROFESSIONAL": {"requests.cpu": "8", "limits.cpu": "16", "requests.memory": "16Gi", "limits.memory": "32Gi",
                     "pods": "50", "services": "20", "persistentvolumeclaims": "10"},
    "ENTERPRISE": {"requests.cpu": "16", "limits.cpu": "32", "requests.memory": "32Gi", "limits.memory": "64Gi",
                   "pods": "100", "services": "40", "persistentvolumeclaims": "20"},
}
LIMIT_RANGE = {
    "default": {"cpu": "500m", "memory": "512Mi"},
    "defaultRequest": {"cpu": "100m", "memory": "256Mi"},
    "max": {"cpu": "2", "memory": "4Gi"},
    "min": {"cpu": "50m", "memory": "64Mi"},
}
TIERS = ("FREE", "PROFESSIONAL", "ENTERPRISE")


def make_spec(tier: str = "PROFESSIONAL", slug: str = "acme", *, parent: str = "matih.ai",
              cluster: ClusterRef | None = None, **extra) -> TenantSpec:
    return TenantSpec(
        tenant_id=extra.pop("tenant_id", str(uuid.UUID(int=42))),
        slug=slug, tier=tier, region="eastus", admin_email=f"admin@{slug}.example",
        namespace=f"tenant-{slug}", dns_zone=f"{slug}.{parent}", parent_zone=parent,
        quota=dict(QUOTAS[tier]), limit_range={k: dict(v) for k, v in LIMIT_RANGE.items()},
        cluster=cluster, **extra,
    )


@pytest.fixture
def spec() -> TenantSpec:
    return make_spec()


@pytest.fixture
def redis_url() -> str:
    from django.conf import settings

    return settings.REDIS_URL


@pytest.fixture
def lock_key(redis_url):
    """A key of this test alone; deleted afterwards (never FLUSHALL a shared Redis)."""
    import redis

    key = f"matih-test:lock:{uuid.uuid4().hex}"
    yield key
    redis.Redis.from_url(redis_url).delete(key)


@pytest.fixture
def api():
    """The fake Kubernetes API server (strict schema validation of every body)."""
    server = FakeKubeApi().start()
    yield server
    server.stop()


@pytest.fixture
def driver(api):
    """The real Kubernetes driver on the fake API server, as the shared cluster `shared-1`."""
    from deploy.kubernetes import KubernetesClusterDriver

    driver = KubernetesClusterDriver(ClusterRef("shared-1", api.url), request_timeout=2)
    yield driver
    driver.close()


def provision(driver, spec) -> None:
    """What the provisioning steps make with the Kubernetes driver."""
    driver.ensure_namespace(spec)
    driver.ensure_quotas(spec)
    driver.ensure_network_policies(spec)
    driver.ensure_ingress(spec)
