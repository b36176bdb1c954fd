"""HTTP for a tenant's API keys: list, issue (the secret shown once), revoke. Operators and the tenant's own keys."""
from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.generics import ListAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from iam import selectors, services
from matih.api import error_response, not_found
from matih.serializers import StrictCharField, StrictSerializer
from tenants.selectors import tenant_visible_to


class ApiKeySerializer(serializers.Serializer):
    """A key as listed: never its secret (only its hash is stored)."""

    id = serializers.UUIDField()
    name = serializers.CharField()
    prefix = serializers.CharField(help_text="The visible part of the key: `mk_<prefix>_…`.")
    createdAt = serializers.DateTimeField(source="created_at")
    lastUsedAt = serializers.DateTimeField(source="last_used_at", allow_null=True)
    revokedAt = serializers.DateTimeField(source="revoked_at", allow_null=True)


class IssuedApiKeySerializer(ApiKeySerializer):
    key = serializers.CharField(help_text="The key itself; shown this once, never again.")


class ApiKeyRequestSerializer(StrictSerializer):
    name = StrictCharField(min_length=1, max_length=100, help_text="What the key is for, e.g. `ci-deploy`.")


def may_not_manage_keys() -> Response:
    return error_response("forbidden", f"Managing the tenant's keys needs {services.KEYS_MANAGE}.",
                          status.HTTP_403_FORBIDDEN)


class TenantApiKeys(ListAPIView):
    serializer_class = ApiKeySerializer

    def get_queryset(self):
        return selectors.api_keys_of(self.tenant)

    def list(self, request, *args, **kwargs):
        self.tenant = tenant_visible_to(request.auth, kwargs["tenant_id"])
        if self.tenant is None:
            return not_found()
        if not services.may_manage_keys(caller=request.auth, tenant=self.tenant):
            return may_not_manage_keys()
        return super().list(request, *args, **kwargs)

    @extend_schema(request=ApiKeyRequestSerializer, responses={201: IssuedApiKeySerializer})
    def post(self, request, tenant_id):
        tenant = tenant_visible_to(request.auth, tenant_id)
        if tenant is None:
            return not_found()
        body = ApiKeyRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            issued = services.tenant_key_issue(tenant=tenant, caller=request.auth, name=body.validated_data["name"])
        except services.KeyRefused as exc:
            return error_response("forbidden", str(exc), status.HTTP_403_FORBIDDEN)
        except services.NoKeyOwner as exc:
            return error_response("no_administrator", str(exc), status.HTTP_409_CONFLICT)
        issued.api_key.key = issued.raw
        return Response(IssuedApiKeySerializer(issued.api_key).data, status=status.HTTP_201_CREATED)


class TenantApiKey(APIView):
    @extend_schema(request=None, responses={204: None})
    def delete(self, request, tenant_id, key_id):
        tenant = tenant_visible_to(request.auth, tenant_id)
        if tenant is None:
            return not_found()
        if not services.may_manage_keys(caller=request.auth, tenant=tenant):
            return may_not_manage_keys()
        api_key = selectors.api_key_of(tenant, key_id)
        if api_key is None:
            return not_found("API key")
        services.api_key_revoke(api_key=api_key)
        return Response(status=status.HTTP_204_NO_CONTENT)
