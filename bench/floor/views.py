"""The floor: tenant registration as a minimal Django + DRF app writes it.

The same body, validated by the same rules (name, a DNS-label slug that is not reserved,
tier, a served region, the admin's email, optional settings, unknown fields refused); the
same rows, in one transaction (tenant,
settings, three roles, the admin user, the membership, the subscription, the admin's API
key, the PENDING provisioning job); the same answer. No authentication, no middleware, no
logging, no metrics, no Celery publish. ENTERPRISE (a service principal, encrypted at rest)
is outside the floor: the benchmark registers FREE and PROFESSIONAL tenants. The rules are
restated here on purpose: the floor must not import the product's code, whose cost is what
it measures.
"""
from __future__ import annotations

import hashlib
import re
import secrets
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework import serializers, status
from rest_framework.parsers import JSONParser
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from bench.floor.models import (
    ApiKey, BillingPlan, Membership, ProvisioningJob, Role, Subscription, Tenant, TenantSettings, User,
)

SLUG = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
RESERVED_SLUGS = frozenset({
    "admin", "api", "www", "app", "apps", "auth", "login", "static", "media", "assets", "docs", "status",
    "mail", "smtp", "ftp", "ns", "ns1", "ns2", "dns", "root", "system", "internal", "matih", "platform",
    "default", "kube-system", "kube-public", "kube-node-lease", "cert-manager", "ingress-nginx",
    "monitoring", "grafana", "prometheus", "bi", "dashboard", "support", "billing", "test", "localhost",
})
TIERS = ["FREE", "PROFESSIONAL"]
ROLES = {
    "Admin": ["tenant.read", "tenant.update", "users.manage", "roles.manage", "keys.manage", "billing.read",
              "billing.manage", "provisioning.read", "provisioning.manage", "data.read", "data.query", "data.manage"],
    "Analyst": ["tenant.read", "provisioning.read", "data.read", "data.query"],
    "Viewer": ["tenant.read", "provisioning.read", "data.read"],
}
SETTINGS = {
    "FREE": {"dataRetentionDays": 30, "maxConcurrentQueries": 2, "queryTimeoutSeconds": 60},
    "PROFESSIONAL": {"dataRetentionDays": 365, "maxConcurrentQueries": 10, "queryTimeoutSeconds": 300},
}
COMMON_SETTINGS = {"timezone": "UTC", "locale": "en-US", "notifications": {"email": True, "webhooks": []}}
_plan_codes: dict[str, str] = {}


class Strict(serializers.Serializer):
    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = set(data) - set(self.fields)
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in sorted(unknown)})
        return super().to_internal_value(data)


class RegistrationIn(Strict):
    name = serializers.CharField(min_length=1, max_length=200)
    slug = serializers.RegexField(SLUG, min_length=3, max_length=63, trim_whitespace=False)
    tier = serializers.ChoiceField(choices=TIERS)
    region = serializers.CharField(max_length=32)
    adminEmail = serializers.EmailField(max_length=150)
    settings = serializers.DictField(required=False)

    def validate_slug(self, slug: str) -> str:
        if slug in RESERVED_SLUGS:
            raise serializers.ValidationError(f"'{slug}' is reserved.")
        return slug

    def validate_region(self, region: str) -> str:
        if region not in settings.MATIH_REGIONS:
            raise serializers.ValidationError("Unknown region.")
        return region


class RegistrationOut(serializers.ModelSerializer):
    adminEmail = serializers.CharField(source="admin_email")
    provisioningStartedAt = serializers.DateTimeField(source="provisioning_started_at")
    provisionedAt = serializers.DateTimeField(source="provisioned_at")
    deploymentType = serializers.CharField(source="deployment_type")
    kubernetesNamespace = serializers.CharField(source="kubernetes_namespace")
    azureAksClusterName = serializers.CharField(source="azure_aks_cluster_name")
    dnsZone = serializers.CharField(source="dns_zone")
    suspendedAt = serializers.DateTimeField(source="suspended_at")
    suspensionReason = serializers.CharField(source="suspension_reason")
    deletionScheduledAt = serializers.DateTimeField(source="deletion_scheduled_at")
    deletedAt = serializers.DateTimeField(source="deleted_at")
    createdAt = serializers.DateTimeField(source="created_at")
    adminApiKey = serializers.CharField()
    provisioningJobId = serializers.UUIDField()

    class Meta:
        model = Tenant
        fields = ["id", "name", "slug", "tier", "status", "region", "adminEmail", "provisioningStartedAt",
                  "provisionedAt", "deploymentType", "kubernetesNamespace", "azureAksClusterName", "dnsZone",
                  "suspendedAt", "suspensionReason", "deletionScheduledAt", "deletedAt", "createdAt",
                  "adminApiKey", "provisioningJobId"]


def plan_code(tier: str) -> str:
    if tier not in _plan_codes:
        _plan_codes[tier] = BillingPlan.objects.get(tier=tier).code
    return _plan_codes[tier]


def register(data: dict) -> tuple[Tenant, str, ProvisioningJob]:
    """One registration in one transaction: the tenant, the admin's raw key, the job."""
    with transaction.atomic():
        return write_registration(data)


def write_registration(data: dict) -> tuple[Tenant, str, ProvisioningJob]:
    """The rows of one registration (tenant, settings, roles, user, membership, subscription, key, job)."""
    now = timezone.now()
    email = data["adminEmail"].lower()
    tenant = Tenant.objects.create(
        name=data["name"], slug=data["slug"], tier=data["tier"], region=data["region"], admin_email=email,
        status="PROVISIONING", provisioning_started_at=now,
    )
    roles = Role.objects.bulk_create([Role(tenant=tenant, name=n, permissions=p) for n, p in ROLES.items()])
    user = User.objects.create(email=email, username=email, password="!" + secrets.token_urlsafe(30))
    Membership.objects.create(user=user, tenant=tenant, role=roles[0])
    Subscription.objects.create(tenant=tenant, plan_id=plan_code(tenant.tier), started_at=now,
                                current_period_end=now + timedelta(days=30))
    TenantSettings.objects.create(
        tenant=tenant, values={**COMMON_SETTINGS, **SETTINGS[tenant.tier], **data.get("settings", {})})
    prefix = secrets.token_hex(4)
    raw_key = f"mk_{prefix}_{secrets.token_urlsafe(32)}"
    ApiKey.objects.create(user=user, tenant=tenant, name="admin (registration)", prefix=prefix,
                          key_hash=hashlib.sha256(raw_key.encode()).hexdigest())
    job = ProvisioningJob.objects.create(tenant=tenant, tier=tenant.tier, initiated_by=user,
                                         context={"slug": tenant.slug, "region": tenant.region})
    return tenant, raw_key, job


class Registration(APIView):
    authentication_classes: list = []
    permission_classes: list = []
    throttle_classes: list = []
    parser_classes = [JSONParser]
    renderer_classes = [JSONRenderer]

    def post(self, request):
        body = RegistrationIn(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            tenant, raw_key, job = register(body.validated_data)
        except IntegrityError:
            return Response({"error": "slug_taken"}, status=status.HTTP_409_CONFLICT)
        tenant.adminApiKey, tenant.provisioningJobId = raw_key, job.id
        return Response(RegistrationOut(tenant).data, status=status.HTTP_201_CREATED)
