"""Input validation and output shapes of the tenant API (camelCase, as the seed)."""
from __future__ import annotations

import json
import re

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from billing.models import Tier
from iam.models import User
from matih.api import StrictCharField, StrictEmailField, StrictSerializer, one_of
from provisioning.engine.plans import ALL_STEP_NAMES
from tenants.models import Tenant, TenantStatus
from tenants.selectors import ORDERINGS

SLUG_PATTERN = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
RESERVED_SLUGS = frozenset({
    "admin", "api", "www", "app", "apps", "auth", "login", "static", "media", "assets", "docs", "status",
    "mail", "smtp", "ftp", "ns", "ns1", "ns2", "dns", "root", "system", "internal", "matih", "platform",
    "default", "kube-system", "kube-public", "kube-node-lease", "cert-manager", "ingress-nginx",
    "monitoring", "grafana", "prometheus", "bi", "dashboard", "support", "billing", "test", "localhost",
})
MAX_SETTINGS_BYTES = 16384


@extend_schema_field({"type": "string", "enum": list(settings.MATIH_REGIONS)})
class RegionField(StrictCharField):
    """A region served (MATIH_REGIONS)."""

    def __init__(self, **kwargs):
        super().__init__(max_length=32, **kwargs)

    def to_internal_value(self, data):
        region = super().to_internal_value(data)
        if region not in settings.MATIH_REGIONS:
            raise serializers.ValidationError(f"Unknown region; use one of {', '.join(settings.MATIH_REGIONS)}.")
        return region


class ServicePrincipalSerializer(StrictSerializer):
    clientId = StrictCharField(max_length=100)
    clientSecret = StrictCharField(max_length=500, trim_whitespace=False)
    azureTenantId = StrictCharField(max_length=100)
    subscriptionId = StrictCharField(max_length=100)


class FaultSerializer(StrictSerializer):
    mode = serializers.ChoiceField(choices=["transient", "permanent"])
    times = serializers.IntegerField(min_value=1, max_value=1000, required=False, default=1)


class SimulateSerializer(StrictSerializer):
    faults = serializers.DictField(child=FaultSerializer(), required=False, default=dict)
    timeScale = serializers.FloatField(min_value=0, max_value=10, required=False)

    def validate_faults(self, faults: dict) -> dict:
        unknown = sorted(set(faults) - ALL_STEP_NAMES)
        if unknown:
            raise serializers.ValidationError(
                f"Unknown step(s) {', '.join(unknown)}; known steps: {', '.join(sorted(ALL_STEP_NAMES))}."
            )
        return faults


class TenantRegistrationSerializer(StrictSerializer):
    name = StrictCharField(min_length=1, max_length=200)
    slug = StrictCharField(min_length=3, max_length=63, trim_whitespace=False)
    tier = serializers.ChoiceField(
        choices=Tier.choices,
        error_messages={"invalid_choice": f"Must be one of {', '.join(Tier.values)}."},
    )
    region = RegionField()
    # Not RFC 5321's 254: the admin user's username is the email, and usernames hold 150.
    adminEmail = StrictEmailField(max_length=User._meta.get_field("username").max_length)
    settings = serializers.DictField(required=False)
    servicePrincipal = ServicePrincipalSerializer(required=False)
    simulate = SimulateSerializer(required=False)

    def validate_slug(self, slug: str) -> str:
        if not SLUG_PATTERN.match(slug):
            raise serializers.ValidationError(
                "Must be a DNS label: lowercase letters, digits and hyphens, starting and ending with a letter or digit."
            )
        if slug in RESERVED_SLUGS:
            raise serializers.ValidationError(f"'{slug}' is reserved.")
        return slug

    def validate_settings(self, values: dict) -> dict:
        if len(json.dumps(values)) > MAX_SETTINGS_BYTES:
            raise serializers.ValidationError(f"Must be at most {MAX_SETTINGS_BYTES} bytes of JSON.")
        return values

    def validate_simulate(self, simulate: dict) -> dict:
        if settings.MATIH_INFRA_BACKEND != "simulated":
            raise serializers.ValidationError("Fault injection needs the simulated cloud (MATIH_INFRA_BACKEND=simulated).")
        if not self.context.get("is_operator"):
            raise serializers.ValidationError("Only platform operators may inject faults.")
        return simulate

    def validate(self, data: dict) -> dict:
        if data["tier"] == Tier.ENTERPRISE and not data.get("servicePrincipal"):
            raise serializers.ValidationError({"servicePrincipal": ["Required for ENTERPRISE tenants."]})
        if data["tier"] != Tier.ENTERPRISE and data.get("servicePrincipal"):
            raise serializers.ValidationError({"servicePrincipal": ["Only ENTERPRISE tenants take a service principal."]})
        return data


class TenantListQuerySerializer(serializers.Serializer):
    """The query of GET /tenants: filters (each given must hold) and the order."""

    status = serializers.ChoiceField(choices=TenantStatus.values, required=False,
                                     error_messages=one_of(TenantStatus.values))
    tier = serializers.ChoiceField(choices=Tier.values, required=False, error_messages=one_of(Tier.values))
    region = RegionField(required=False)
    search = StrictCharField(required=False, max_length=200, allow_blank=True,
                             help_text="Part of the name, slug or admin email (any case).")
    ordering = serializers.ChoiceField(choices=list(ORDERINGS), required=False, error_messages=one_of(ORDERINGS),
                                       help_text="Default: -createdAt (newest first).")


class TenantSerializer(serializers.ModelSerializer):
    """The tenant record of the seed."""

    adminEmail = serializers.EmailField(source="admin_email")
    provisioningStartedAt = serializers.DateTimeField(source="provisioning_started_at")
    provisionedAt = serializers.DateTimeField(source="provisioned_at")
    deploymentType = serializers.CharField(source="deployment_type")
    kubernetesNamespace = serializers.CharField(source="kubernetes_namespace")
    azureAksClusterName = serializers.CharField(source="azure_aks_cluster_name")
    dnsZone = serializers.CharField(source="dns_zone")
    createdAt = serializers.DateTimeField(source="created_at")

    class Meta:
        model = Tenant
        fields = [
            "id", "name", "slug", "tier", "status", "region", "adminEmail", "provisioningStartedAt",
            "provisionedAt", "deploymentType", "kubernetesNamespace", "azureAksClusterName", "dnsZone",
            "createdAt",
        ]
        read_only_fields = fields


class RegistrationResponseSerializer(TenantSerializer):
    adminApiKey = serializers.CharField()
    provisioningJobId = serializers.UUIDField()

    class Meta(TenantSerializer.Meta):
        fields = TenantSerializer.Meta.fields + ["adminApiKey", "provisioningJobId"]
