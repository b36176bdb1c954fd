"""HTTP for tenants: thin views over tenants.services and tenants.selectors."""
from __future__ import annotations

import re

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import permissions, status
from rest_framework.generics import ListAPIView
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle
from rest_framework.views import APIView

from matih.api import error_response
from tenants import selectors
from tenants.serializers import RegistrationResponseSerializer, TenantRegistrationSerializer, TenantSerializer
from tenants.services import Idempotency, IdempotencyConflict, Registration, SlugTaken, register_tenant

MAX_IDEMPOTENCY_KEY = 255
IDEMPOTENCY_KEY_PATTERN = re.compile(r"[\x21-\x7e]{1,%d}" % MAX_IDEMPOTENCY_KEY)


def is_operator(request) -> bool:
    api_key = request.auth
    if api_key is not None:
        return api_key.is_operator and request.user.is_staff
    return bool(request.user and request.user.is_authenticated and request.user.is_staff)


class CanRegister(permissions.BasePermission):
    """Reading needs a key; registering needs an operator key, or nothing at all with open signup."""

    message = "Registering tenants needs an operator API key."

    def has_permission(self, request, view) -> bool:
        if request.method != "POST":
            return request.user is not None and request.user.is_authenticated
        return settings.MATIH_OPEN_SIGNUP or is_operator(request)


class SignupThrottle(SimpleRateThrottle):
    """Throttles registrations by anyone but an operator (open signup), per client address.

    The rate is read from settings.MATIH_SIGNUP_RATE on every request, not frozen
    at import time as DRF's DEFAULT_THROTTLE_RATES would be.
    """

    scope = "signup"

    def get_rate(self) -> str:
        return settings.MATIH_SIGNUP_RATE

    def allow_request(self, request, view) -> bool:
        if request.method != "POST" or is_operator(request):
            return True
        return super().allow_request(request, view)

    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}

    def get_ident(self, request) -> str:
        # Without NUM_PROXIES, DRF trusts any client's X-Forwarded-For: one header per
        # request would dodge the throttle. Behind a proxy, set REST_FRAMEWORK NUM_PROXIES.
        if api_settings.NUM_PROXIES is None:
            return request.META.get("REMOTE_ADDR", "")
        return super().get_ident(request)


# One instance renders every answer: a ModelSerializer builds its fields anew for each
# instance, which cost ten times the rendering itself; rendering keeps no state.
_REGISTRATION_RESPONSE = RegistrationResponseSerializer()


def render_registration(registration: Registration) -> dict:
    tenant = registration.tenant
    tenant.adminApiKey = registration.admin_api_key
    tenant.provisioningJobId = registration.job.id
    return _REGISTRATION_RESPONSE.to_representation(tenant)


class TenantListCreate(ListAPIView):
    permission_classes = [CanRegister]
    throttle_classes = [SignupThrottle]
    serializer_class = TenantSerializer

    def get_queryset(self):
        return selectors.tenants_visible_to(self.request.auth)

    @extend_schema(
        request=TenantRegistrationSerializer,
        responses={201: RegistrationResponseSerializer},
        parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER, required=False)],
    )
    def post(self, request):
        idempotency_key = request.headers.get("Idempotency-Key")
        if idempotency_key is not None and not IDEMPOTENCY_KEY_PATTERN.fullmatch(idempotency_key):
            reason = f"Must be 1-{MAX_IDEMPOTENCY_KEY} printable ASCII characters without spaces."
            return error_response(
                "invalid_request", f"Idempotency-Key: {reason}", status.HTTP_400_BAD_REQUEST,
                {"Idempotency-Key": [reason]},
            )
        operator = is_operator(request)
        serializer = TenantRegistrationSerializer(data=request.data, context={"is_operator": operator})
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        idempotency = None
        if idempotency_key:
            principal = str(request.auth.id) if request.auth is not None else f"anon:{self._client_ip(request)}"
            idempotency = Idempotency.for_request(principal=principal, key=idempotency_key, body=request.data)
        try:
            registration = register_tenant(
                name=data["name"], slug=data["slug"], tier=data["tier"], region=data["region"],
                admin_email=data["adminEmail"], settings=data.get("settings"),
                service_principal=data.get("servicePrincipal"), simulate=data.get("simulate"),
                initiated_by=request.user if request.auth is not None else None,
                idempotency=idempotency, render=render_registration,
            )
        except SlugTaken as exc:
            return error_response(exc.code, str(exc), status.HTTP_409_CONFLICT, {"slug": [str(exc)]})
        except IdempotencyConflict as exc:
            return error_response(exc.code, str(exc), status.HTTP_409_CONFLICT)
        if registration.replayed_body is not None:
            return Response(registration.replayed_body, status=status.HTTP_201_CREATED,
                            headers={"Idempotent-Replayed": "true"})
        return Response(render_registration(registration), status=status.HTTP_201_CREATED)

    def _client_ip(self, request) -> str:
        return request.META.get("REMOTE_ADDR", "")


class TenantDetail(APIView):
    @extend_schema(responses={200: TenantSerializer})
    def get(self, request, tenant_id):
        tenant = selectors.tenant_visible_to(request.auth, tenant_id)
        if tenant is None:
            return error_response("not_found", "No such tenant.", status.HTTP_404_NOT_FOUND)
        return Response(TenantSerializer(tenant).data)
