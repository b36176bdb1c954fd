"""Reads of tenants, scoped to who asks."""
from __future__ import annotations

from django.db.models import Q, QuerySet

from iam.models import ApiKey
from iam.selectors import is_operator_key
from tenants.models import Tenant

# The `ordering` values of GET /tenants and the columns they sort by (ties broken by id).
ORDERINGS: dict[str, tuple[str, ...]] = {
    "createdAt": ("created_at", "id"),
    "-createdAt": ("-created_at", "id"),
    "name": ("name", "id"),
    "slug": ("slug",),
}
DEFAULT_ORDERING = "-createdAt"


def tenants_visible_to(api_key: ApiKey | None) -> QuerySet[Tenant]:
    """An operator key sees every tenant; a tenant key only its own; no key nothing."""
    tenants = Tenant.objects.order_by(*ORDERINGS[DEFAULT_ORDERING])
    if api_key is None:
        return tenants.none()
    if is_operator_key(api_key):
        return tenants
    return tenants.filter(id=api_key.tenant_id)


def tenant_visible_to(api_key: ApiKey | None, tenant_id) -> Tenant | None:
    return tenants_visible_to(api_key).filter(id=tenant_id).first()


def tenant_by_slug_visible_to(api_key: ApiKey | None, slug: str) -> Tenant | None:
    return tenants_visible_to(api_key).filter(slug=slug).first()


def tenants_matching(
    api_key: ApiKey | None, *, status: str | None = None, tier: str | None = None, region: str | None = None,
    search: str | None = None, ordering: str | None = None,
) -> QuerySet[Tenant]:
    """The tenants this key sees, filtered (each filter given must hold) and in the order asked."""
    tenants = tenants_visible_to(api_key)
    if status:
        tenants = tenants.filter(status=status)
    if tier:
        tenants = tenants.filter(tier=tier)
    if region:
        tenants = tenants.filter(region=region)
    if search:
        tenants = tenants.filter(
            Q(name__icontains=search) | Q(slug__icontains=search) | Q(admin_email__icontains=search)
        )
    return tenants.order_by(*ORDERINGS[ordering or DEFAULT_ORDERING])
