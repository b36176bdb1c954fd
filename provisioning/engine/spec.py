"""What a tenant looks like to the drivers: names, quotas and limits per tier (REFERENCE.md)."""
from __future__ import annotations

from django.conf import settings

from deploy.interfaces import ClusterRef, TenantSpec

QUOTAS: dict[str, dict[str, str]] = {
    "FREE": {
        "requests.cpu": "2", "limits.cpu": "4", "requests.memory": "4Gi", "limits.memory": "8Gi",
        "pods": "20", "services": "10", "persistentvolumeclaims": "5",
    },
    "PROFESSIONAL": {
        "requests.cpu": "8", "limits.cpu": "16", "requests.memory": "16Gi", "limits.memory": "32Gi",
        "pods": "50", "services": "20", "persistentvolumeclaims": "10",
    },
}
# ENTERPRISE: from the tenant's settings ("quotas"), else the PROFESSIONAL values doubled.
QUOTAS["ENTERPRISE"] = {
    "requests.cpu": "16", "limits.cpu": "32", "requests.memory": "32Gi", "limits.memory": "64Gi",
    "pods": "100", "services": "40", "persistentvolumeclaims": "20",
}

LIMIT_RANGE: dict[str, dict[str, str]] = {
    "default": {"cpu": "500m", "memory": "512Mi"},
    "defaultRequest": {"cpu": "100m", "memory": "256Mi"},
    "max": {"cpu": "2", "memory": "4Gi"},
    "min": {"cpu": "50m", "memory": "64Mi"},
}


def namespace_for(slug: str) -> str:
    return f"tenant-{slug}"


def quota_for(tier: str, tenant_settings: dict | None = None) -> dict[str, str]:
    quota = dict(QUOTAS[tier])
    if tier == "ENTERPRISE" and tenant_settings and isinstance(tenant_settings.get("quotas"), dict):
        quota.update({k: str(v) for k, v in tenant_settings["quotas"].items() if k in quota})
    return quota


def tenant_spec(*, tenant_id: str, slug: str, tier: str, region: str, admin_email: str,
                tenant_settings: dict | None = None, cluster: ClusterRef | None = None) -> TenantSpec:
    parent = settings.MATIH_DNS_PARENT_ZONE
    return TenantSpec(
        tenant_id=str(tenant_id), slug=slug, tier=tier, region=region, admin_email=admin_email,
        namespace=namespace_for(slug), dns_zone=f"{slug}.{parent}", parent_zone=parent,
        quota=quota_for(tier, tenant_settings), limit_range=LIMIT_RANGE, cluster=cluster,
        custom_config=(tenant_settings or {}).get("customConfig", {}) if tier == "ENTERPRISE" else {},
    )
