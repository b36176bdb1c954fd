from __future__ import annotations

import itertools
import time

from provisioning.models import ProvisioningJob
from provisioning.engine.plans import plan_for
from provisioning.selectors import provisioning_status
from tenants.models import Tenant

_counter = itertools.count(1)


def register(client, *, tier: str = "FREE", slug: str | None = None, simulate: dict | None = None,
             settings: dict | None = None) -> dict:
    slug = slug or f"t{int(time.time() * 1000) % 10**8}-{next(_counter)}"
    body = {"name": f"Tenant {slug}", "slug": slug, "tier": tier, "region": "eastus",
            "adminEmail": f"admin@{slug}.example.com"}
    if tier == "ENTERPRISE":
        body["servicePrincipal"] = {"clientId": "11111111-2222-3333-4444-555555555555",
                                    "clientSecret": "s3cr3t-value", "azureTenantId": "tenant-guid",
                                    "subscriptionId": "sub-guid"}
    if simulate is not None:
        body["simulate"] = simulate
    if settings is not None:
        body["settings"] = settings
    response = client.post("/api/v1/tenants", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def status_of(tenant_id) -> dict:
    return provisioning_status(Tenant.objects.get(id=tenant_id))


def job_of(tenant_id) -> ProvisioningJob:
    return ProvisioningJob.objects.filter(tenant_id=tenant_id).order_by("-created_at").first()


def terminal(tenant_id):
    job = job_of(tenant_id)
    return job if job is not None and job.is_terminal else None


def assert_phases_consistent(status: dict, tier: str) -> None:
    """completed + current + remaining is the tier's phase list, in the seed's order."""
    phases = list(plan_for(tier).phases)
    completed, current, remaining = status["completedPhases"], status["currentPhase"], status["remainingPhases"]
    if current == "COMPLETED":
        assert completed == phases and remaining == [], status
        return
    k = len(completed)
    assert completed == phases[:k], status
    assert current == phases[k], status
    assert remaining == phases[k + 1:], status
