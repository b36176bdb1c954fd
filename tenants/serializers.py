"""Input validation and output shapes of the tenant API (camelCase, as the seed)."""
from __future__ import annotations

import json
import re
import zoneinfo
from functools import lru_cache

from django.conf import settings
from django.core.validators import RegexValidator
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from billing.models import Tier
from iam.models import User
from matih.api import StrictCharField, StrictEmailField, StrictSerializer, one_of
from provisioning.engine.plans import ALL_STEP_NAMES, plan_for
from provisioning.engine.spec import QUOTAS
from provisioning.notifications import MAX_WEBHOOK_URL, webhook_url_problem
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
MAX_WEBHOOKS = 10
SHARED_TIERS = (Tier.FREE, Tier.PROFESSIONAL)
SERVICE_PRINCIPAL_ENTERPRISE_ONLY = (
    "ENTERPRISE only: only ENTERPRISE tenants take a service principal (FREE and PROFESSIONAL run on the "
    "shared cluster); leave it out or register as ENTERPRISE."
)


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


class StrictIntegerField(serializers.IntegerField):
    """An IntegerField that refuses strings, booleans and fractions instead of coercing them."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    """true or false, not "yes", 1 or "on"."""

    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


@lru_cache(maxsize=1)
def known_timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


class TimezoneField(StrictCharField):
    """An IANA time zone name (UTC, Europe/Paris)."""

    def __init__(self, **kwargs):
        super().__init__(max_length=64, **kwargs)

    def to_internal_value(self, data):
        name = super().to_internal_value(data)
        if name not in known_timezones():
            raise serializers.ValidationError("Unknown time zone; use an IANA name such as UTC or Europe/Paris.")
        return name


LOCALE_PATTERN = r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$"
# A Kubernetes quantity as ResourceQuota takes it: 4, 500m, 1.5, 16Gi.
QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"


@extend_schema_field({
    "type": "object", "additionalProperties": False,
    "description": "ResourceQuota overrides (ENTERPRISE only); the tier's defaults fill the rest.",
    "properties": {name: {"oneOf": [{"type": "string", "pattern": QUANTITY_PATTERN, "maxLength": 32},
                                    {"type": "integer", "minimum": 0, "maximum": 10**9}]}
                   for name in QUOTAS["ENTERPRISE"]},
})
class QuotasField(serializers.Field):
    """ENTERPRISE ResourceQuota overrides: {"pods": 200, "limits.memory": "128Gi"}; only the quota's own keys."""

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            raise serializers.ValidationError("Expected a JSON object of quota values.")
        errors = {}
        for name, value in data.items():
            if name not in QUOTAS["ENTERPRISE"]:
                errors[name] = [f"Unknown quota; use {', '.join(QUOTAS['ENTERPRISE'])}."]
            elif isinstance(value, bool) or not isinstance(value, (int, str)):
                errors[name] = ["Must be a Kubernetes quantity: a string such as '16Gi' or '500m', or an integer."]
            elif isinstance(value, int) and not 0 <= value <= 10**9:
                errors[name] = ["Must be between 0 and 1000000000."]
            elif isinstance(value, str) and (len(value) > 32 or not re.fullmatch(QUANTITY_PATTERN, value)):
                errors[name] = ["Must be a Kubernetes quantity such as '16Gi', '500m' or '4'."]
        if errors:
            raise serializers.ValidationError(errors)
        return data

    def to_representation(self, value):
        return value


class WebhookSerializer(StrictSerializer):
    url = StrictCharField(max_length=MAX_WEBHOOK_URL, trim_whitespace=False, help_text=(
        "An http or https URL. Addresses on the platform's own network (loopback, private, link-local, "
        "multicast, unspecified) are refused, here and again when the webhook is sent, unless the platform "
        "sets MATIH_WEBHOOK_ALLOW_PRIVATE."))
    secret = StrictCharField(max_length=200, required=False, allow_blank=True, trim_whitespace=False,
                             help_text="Signs each delivery: X-Matih-Signature: sha256=HMAC(secret, timestamp.body).")

    def validate_url(self, url: str) -> str:
        problem = webhook_url_problem(url)
        if problem:
            raise serializers.ValidationError(problem)
        return url


class NotificationsSerializer(StrictSerializer):
    email = StrictBooleanField(required=False, help_text="Email the admin when a job ends (default true).")
    webhooks = WebhookSerializer(many=True, required=False, max_length=MAX_WEBHOOKS)


class TenantSettingsSerializer(StrictSerializer):
    """The tenant's settings: the tier's defaults (tenants.services) overridden by what is given."""

    default_error_messages = {"not_a_dict": "Expected a JSON object (a dictionary of settings)."}

    timezone = TimezoneField(required=False)
    locale = StrictCharField(required=False, max_length=35, validators=[RegexValidator(
        LOCALE_PATTERN, "Must be a language tag such as en-US or fr.")])
    notifications = NotificationsSerializer(required=False)
    dataRetentionDays = StrictIntegerField(required=False, min_value=1, max_value=3650)
    maxConcurrentQueries = StrictIntegerField(required=False, min_value=1, max_value=1000)
    queryTimeoutSeconds = StrictIntegerField(required=False, min_value=1, max_value=86400)
    quotas = QuotasField(required=False)
    customConfig = serializers.DictField(required=False, help_text=(
        "ENTERPRISE only: per-chart Helm values, `terraform` variables, `ingress_class`."))

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            raise serializers.ValidationError({"non_field_errors": [self.error_messages["not_a_dict"]]})
        return super().to_internal_value(data)

    def validate(self, data: dict) -> dict:
        if len(json.dumps(data)) > MAX_SETTINGS_BYTES:
            raise serializers.ValidationError(f"Must be at most {MAX_SETTINGS_BYTES} bytes of JSON.")
        return data


ENTERPRISE_ONLY_SETTINGS = ("quotas", "customConfig")


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
    settings = TenantSettingsSerializer(required=False)
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

    def validate_simulate(self, simulate: dict) -> dict:
        if settings.MATIH_INFRA_BACKEND != "simulated":
            raise serializers.ValidationError("Fault injection needs the simulated cloud (MATIH_INFRA_BACKEND=simulated).")
        if not self.context.get("is_operator"):
            raise serializers.ValidationError("Only platform operators may inject faults.")
        return simulate

    def to_internal_value(self, data):
        """A service principal below ENTERPRISE is refused as such, whatever it holds (its sub-fields are not read)."""
        errors = {}
        if isinstance(data, dict) and data.get("tier") in SHARED_TIERS and "servicePrincipal" in data:
            errors["servicePrincipal"] = [SERVICE_PRINCIPAL_ENTERPRISE_ONLY]
            data = {name: value for name, value in data.items() if name != "servicePrincipal"}
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            raise serializers.ValidationError({**exc.detail, **errors}) from None
        if errors:
            raise serializers.ValidationError(errors)
        return value

    def validate(self, data: dict) -> dict:
        tier = data["tier"]
        if tier == Tier.ENTERPRISE and not data.get("servicePrincipal"):
            raise serializers.ValidationError({"servicePrincipal": ["Required for ENTERPRISE tenants."]})
        errors: dict = {}
        given = data.get("settings") or {}
        if tier != Tier.ENTERPRISE:
            for name in ENTERPRISE_ONLY_SETTINGS:
                if name in given:
                    errors.setdefault("settings", {})[name] = [f"ENTERPRISE only: a {tier} tenant runs on the "
                                                               "shared cluster with its tier's quotas."]
        faults = (data.get("simulate") or {}).get("faults") or {}
        steps = plan_for(tier).step_names
        foreign = sorted(set(faults) - set(steps))
        if foreign:
            errors["simulate"] = {"faults": [
                f"{', '.join(foreign)}: not a step of the {tier} plan; its steps are {', '.join(steps)}."]}
        if errors:
            raise serializers.ValidationError(errors)
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
