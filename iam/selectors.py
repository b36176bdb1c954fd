"""Reads of the IAM concern."""
from __future__ import annotations

from django.db.models import QuerySet

from iam.models import ApiKey


def is_operator_key(api_key: ApiKey | None) -> bool:
    """A platform operator's key: no tenant, and its user is staff. It sees every tenant."""
    return api_key is not None and api_key.is_operator and api_key.user.is_staff


def api_keys_of(tenant) -> QuerySet[ApiKey]:
    """The tenant's keys, revoked ones too, newest first."""
    return ApiKey.objects.filter(tenant=tenant).order_by("-created_at", "id")


def api_key_of(tenant, key_id) -> ApiKey | None:
    return ApiKey.objects.filter(tenant=tenant, id=key_id).first()
