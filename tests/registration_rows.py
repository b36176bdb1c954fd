"""What a registration writes, counted: shared by the control-plane tests."""
from __future__ import annotations

from billing.models import Subscription
from iam.models import ApiKey, Membership, Role, User
from provisioning.models import ProvisioningJob
from tenants.models import IdempotencyRecord, Tenant, TenantSettings


def control_plane_rows() -> dict[str, int]:
    """Everything a registration writes, counted (operators and their keys excluded)."""
    return {
        "tenants": Tenant.objects.count(),
        "users": User.objects.filter(is_staff=False).count(),
        "memberships": Membership.objects.count(),
        "roles": Role.objects.count(),
        "tenantKeys": ApiKey.objects.filter(tenant__isnull=False).count(),
        "subscriptions": Subscription.objects.count(),
        "settings": TenantSettings.objects.count(),
        "jobs": ProvisioningJob.objects.count(),
        "idempotencyRecords": IdempotencyRecord.objects.count(),
    }


NOTHING = dict.fromkeys(
    ["tenants", "users", "memberships", "roles", "tenantKeys", "subscriptions", "settings", "jobs",
     "idempotencyRecords"], 0,
)
