"""Bearer API key authentication, for DRF and for Channels."""
from __future__ import annotations

from rest_framework import authentication, exceptions

from iam.models import ApiKey
from iam.services import KEY_PREFIX, api_key_touch, hash_key


def api_key_from_raw(raw: str | None) -> ApiKey | None:
    """The live key for a raw bearer value, or None."""
    if not raw or not raw.startswith(KEY_PREFIX) or len(raw) > 200:
        return None
    try:
        # key_hash is unique, so get() (no ORDER BY, unlike first()) and the checks
        # below in Python: the cheapest query to build on every request.
        api_key = ApiKey.objects.select_related("user").get(key_hash=hash_key(raw))
    except ApiKey.DoesNotExist:
        return None
    if api_key.revoked_at is not None or not api_key.user.is_active:
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
