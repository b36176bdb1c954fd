"""HTTP for tenants: thin views over tenants.services and tenants.selectors."""
from __future__ import annotations


from django.conf import settings
from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema
from rest_framework import permissions, status
from rest_framework.generics import ListAPIView
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle
from rest_framework.views import APIView

from iam.selectors import is_operator_key
from matih.api import error_response, idempotency_key_parameter, idempotency_key_problem, not_found
from provisioning.lifecycle_api import DeleteTenant, delete_tenant_schema
from tenants import selectors
from tenants.serializers import (
    REGISTRATION_VARIANTS,
    RegistrationResponseSerializer,
    TenantListQuerySerializer,
    TenantRegistrationSerializer,
    TenantSerializer,
)
from tenants.services import Idempotency, IdempotencyConflict, Registration, SlugTaken, register_tenant



def is_operator(request) -> bool:
    if request.auth is not None:
        return is_operator_key(request.auth)
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
        query = TenantListQuerySerializer(data=self.request.query_params.dict())
        query.is_valid(raise_exception=True)
        return selectors.tenants_matching(self.request.auth, **query.validated_data)

    @extend_schema(parameters=[TenantListQuerySerializer])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        request=PolymorphicProxySerializer(
            component_name="TenantRegistration", serializers=REGISTRATION_VARIANTS, resource_type_field_name="tier"),
        responses={201: RegistrationResponseSerializer},
        parameters=[idempotency_key_parameter(
            "The same key with the same body answers the first registration again (for 24 hours); "
            "with another body it is a 409.")],
        description="Operators register tenants (anyone, throttled, when MATIH_OPEN_SIGNUP=true). Unknown fields "
                    "are refused; every refused field is named in `fields`.",
    )
    def post(self, request):
        idempotency_key = request.headers.get("Idempotency-Key")
        malformed = idempotency_key_problem(idempotency_key)
        if malformed is not None:
            return malformed
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
            return not_found()
        return Response(TenantSerializer(tenant).data)

    @delete_tenant_schema
    def delete(self, request, tenant_id):
        """PENDING_DELETION until the grace period ends, then deprovisioned (provisioning.lifecycle_api)."""
        return DeleteTenant().handle(request, tenant_id)


class TenantBySlug(APIView):
    @extend_schema(responses={200: TenantSerializer})
    def get(self, request, slug):
        tenant = selectors.tenant_by_slug_visible_to(request.auth, slug)
        if tenant is None:
            return not_found()
        return Response(TenantSerializer(tenant).data)
