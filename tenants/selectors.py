"""Reads of tenants, scoped to who asks."""
from __future__ import annotations

from django.db.models import QuerySet

from iam.models import ApiKey
from tenants.models import Tenant


def tenants_visible_to(api_key: ApiKey | None) -> QuerySet[Tenant]:
    """An operator key sees every tenant; a tenant key only its own; no key nothing."""
    tenants = Tenant.objects.order_by("-created_at", "id")
    if api_key is None:
        return tenants.none()
    if api_key.is_operator and api_key.user.is_staff:
        return tenants
    return tenants.filter(id=api_key.tenant_id)


def tenant_visible_to(api_key: ApiKey | None, tenant_id) -> Tenant | None:
    return tenants_visible_to(api_key).filter(id=tenant_id).first()
