from __future__ import annotations

import itertools
import time

from iam.services import api_key_create
from iam.models import User
from provisioning.models import ProvisioningJob
from tenants.models import Tenant, TenantStatus

_counter = itertools.count(1)


def quiet_tenant(*, tier: str = "FREE") -> tuple[Tenant, ProvisioningJob, str]:
    """A PROVISIONING tenant with a PENDING job that no worker was asked to run, and its admin's key."""
    slug = f"q{int(time.time() * 1000) % 10**8}-{next(_counter)}"
    tenant = Tenant.objects.create(name=f"Tenant {slug}", slug=slug, tier=tier, region="eastus",
                                   admin_email=f"admin@{slug}.example.com", status=TenantStatus.PROVISIONING)
    job = ProvisioningJob.objects.create(tenant=tenant, tier=tier, context={"slug": slug})
    admin = User.objects.create(email=f"admin@{slug}.example.com", username=f"admin@{slug}.example.com")
    return tenant, job, api_key_create(user=admin, tenant=tenant, name="tests").raw


PHASE_ORDER_TERMINAL = ("COMPLETED",)


def phase_index(tier: str, phase: str) -> int:
    from provisioning.engine.plans import plan_for

    phases = list(plan_for(tier).phases) + ["COMPLETED"]
    return phases.index(phase)
