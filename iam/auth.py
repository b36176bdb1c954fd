"""Bearer API key authentication, for DRF and for Channels."""
from __future__ import annotations

from functools import cache

from django.db import connection
from rest_framework import authentication, exceptions

from iam.models import ApiKey, User
from iam.services import KEY_PREFIX, api_key_touch, hash_key


@cache
def _key_with_user_sql() -> str:
    """`ApiKey.objects.select_related("user").get(key_hash=...)`, rendered once from the models.

    Every authenticated request runs this lookup; building it through the ORM (the join,
    the select list, the WHERE clause) cost more CPU than the rest of the lookup. The
    columns are the models' concrete fields in their order, as the ORM selects them.
    """
    quote = connection.ops.quote_name
    key_columns = [f"k.{quote(f.column)}" for f in ApiKey._meta.concrete_fields]
    user_columns = [f"u.{quote(f.column)}" for f in User._meta.concrete_fields]
    user_fk = ApiKey._meta.get_field("user")
    return (
        f"SELECT {', '.join(key_columns + user_columns)} FROM {quote(ApiKey._meta.db_table)} k"
        f" INNER JOIN {quote(User._meta.db_table)} u ON u.{quote(User._meta.pk.column)} = k.{quote(user_fk.column)}"
        f" WHERE k.{quote(ApiKey._meta.get_field('key_hash').column)} = %s"
    )


def _key_with_user(key_hash: str) -> ApiKey | None:
    """The key with this hash and its user (one query), or None."""
    with connection.cursor() as cursor:
        cursor.execute(_key_with_user_sql(), [key_hash])
        row = cursor.fetchone()
    if row is None:
        return None
    key_fields = [f.attname for f in ApiKey._meta.concrete_fields]
    api_key = ApiKey.from_db(connection.alias, key_fields, row[:len(key_fields)])
    user = User.from_db(connection.alias, [f.attname for f in User._meta.concrete_fields], row[len(key_fields):])
    ApiKey._meta.get_field("user").set_cached_value(api_key, user)
    return api_key


def api_key_from_raw(raw: str | None) -> ApiKey | None:
    """The live key for a raw bearer value, or None."""
    if not raw or not raw.startswith(KEY_PREFIX) or len(raw) > 200:
        return None
    api_key = _key_with_user(hash_key(raw))
    if api_key is None or api_key.revoked_at is not None or not api_key.user.is_active:
        return None
    api_key_touch(api_key=api_key)
    return api_key


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        scheme, _, raw = header.partition(" ")
        if scheme.lower() != self.keyword.lower() or not raw.strip():  # schemes are case-insensitive (RFC 9110)
            raise exceptions.AuthenticationFailed("Use 'Authorization: Bearer <api key>'.")
        api_key = api_key_from_raw(raw.strip())
        if api_key is None:
            raise exceptions.AuthenticationFailed("The API key is unknown or revoked.")
        return api_key.user, api_key

    def authenticate_header(self, request) -> str:
        return self.keyword
