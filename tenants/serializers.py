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
from matih.serializers import StrictCharField, StrictEmailField, StrictSerializer, one_of
from provisioning.engine.plans import ALL_STEP_NAMES, plan_for
from provisioning.engine.spec import QUOTAS
from provisioning.notifications import MAX_WEBHOOK_URL, webhook_url_problem
from tenants.models import DeploymentType, Tenant, TenantStatus
from tenants.rules import RESERVED_SLUGS, SLUG_PATTERN
from tenants.selectors import ORDERINGS

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
    """An IntegerField that refuses strings, booleans and fractions instead of coercing them.

    1.0 is an integer (JSON Schema says so, and JSON does not tell 1 from 1.0 apart).
    """

    def to_internal_value(self, data):
        if isinstance(data, float) and data.is_integer():
            data = int(data)
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


def _timezone_schema() -> dict:
    return {"type": "string", "enum": sorted(known_timezones()), "description": "An IANA time zone (default UTC)."}


@extend_schema_field(_timezone_schema())
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
        errors, quotas = {}, {}
        for name, value in data.items():
            if isinstance(value, float) and value.is_integer():  # 4.0 is the integer 4 (JSON Schema)
                value = int(value)
            quotas[name] = value
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
        return quotas

    def to_representation(self, value):
        return value


# What the schema promises is accepted: http(s), a DNS name with a letter TLD, a port, a plain path. The
# server takes more (IP addresses that are public, any port, query strings); webhook_url_problem is the rule.
WEBHOOK_URL_SCHEMA_PATTERN = (r"^https?://([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.){1,4}[a-z]{2,24}"
                              r"(:[1-9][0-9]{0,3})?(/[A-Za-z0-9._~-]{0,40}){0,8}$")


@extend_schema_field({
    "type": "string", "format": "uri", "maxLength": MAX_WEBHOOK_URL, "pattern": WEBHOOK_URL_SCHEMA_PATTERN,
    "description": ("An http or https URL. Addresses on the platform's own network (loopback, private, "
                    "link-local, multicast, unspecified, including 169.254.169.254) are refused, here and again "
                    "when the webhook is sent, unless the platform sets MATIH_WEBHOOK_ALLOW_PRIVATE."),
})
class WebhookUrlField(StrictCharField):
    def __init__(self, **kwargs):
        super().__init__(max_length=MAX_WEBHOOK_URL, trim_whitespace=False, **kwargs)

    def to_internal_value(self, data):
        url = super().to_internal_value(data)
        problem = webhook_url_problem(url)
        if problem:
            raise serializers.ValidationError(problem)
        return url


# Azure tag names may not hold < > % & \ ? / (nor NUL, which nothing stores).
TAG_NAME_PATTERN = r"^[^<>%&\\?/\x00]{1,512}$"
K8S_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
CIDR_PATTERN = rf"^({_OCTET}\.){{3}}{_OCTET}/([0-9]|[12][0-9]|3[0-2])$"


@extend_schema_field({
    "type": "object", "maxProperties": 50, "propertyNames": {"pattern": TAG_NAME_PATTERN},
    "additionalProperties": {"type": "string", "maxLength": 256, "pattern": r"^[^\x00]*$"},
    "description": "Azure tags on the tenant's resources: name -> value.",
})
class AzureTagsField(serializers.DictField):
    def to_internal_value(self, data):
        tags = super().to_internal_value(data)
        errors = {}
        if len(tags) > 50:
            raise serializers.ValidationError("At most 50 tags.")
        for name, value in tags.items():
            if not re.fullmatch(TAG_NAME_PATTERN, name):
                errors[name] = ["A tag name is 1-512 characters without < > % & \\ ? /."]
            elif not isinstance(value, str) or len(value) > 256:
                errors[name] = ["A tag value is a string of at most 256 characters."]
        if errors:
            raise serializers.ValidationError(errors)
        return tags


class CidrField(StrictCharField):
    """An IPv4 network in CIDR notation (10.240.0.0/16)."""

    def __init__(self, **kwargs):
        super().__init__(max_length=18, validators=[RegexValidator(CIDR_PATTERN, "Must be an IPv4 CIDR such as "
                                                                                 "10.240.0.0/16.")], **kwargs)


class TerraformVariablesSerializer(StrictSerializer):
    """Variables of the dedicated cluster's Terraform module (deploy/terraform/aks) a tenant may set."""

    subscription_id = StrictCharField(required=False, max_length=100)
    kubernetes_version = StrictCharField(required=False, allow_null=True, max_length=16, validators=[
        RegexValidator(r"^[0-9]+\.[0-9]+(\.[0-9]+)?$", "Must be a Kubernetes version such as 1.30 or 1.30.4.")],
        help_text="null takes the region's default.")
    node_count = StrictIntegerField(required=False, min_value=1, max_value=100)
    node_vm_size = StrictCharField(required=False, max_length=64, validators=[
        RegexValidator(r"^Standard_[A-Za-z0-9_]{1,55}$", "Must be an Azure VM size such as Standard_D4s_v5.")])
    vnet_cidr = CidrField(required=False)
    subnet_cidr = CidrField(required=False)
    tags = AzureTagsField(required=False)


class CustomConfigSerializer(StrictSerializer):
    """ENTERPRISE only: how the dedicated cluster is built and served."""

    terraform = TerraformVariablesSerializer(required=False)
    ingress_class = StrictCharField(required=False, max_length=63, validators=[
        RegexValidator(K8S_NAME_PATTERN, "Must be a Kubernetes name such as nginx-internal.")],
        help_text="The IngressClass of the tenant's ingress (default: the tenant's own controller).")


class WebhookSerializer(StrictSerializer):
    """A URL told of every job's end, by a signed POST."""

    url = WebhookUrlField()
    secret = StrictCharField(max_length=200, required=False, allow_blank=True, trim_whitespace=False,
                             help_text="Signs each delivery: X-Matih-Signature: sha256=HMAC(secret, timestamp.body).")


class NotificationsSerializer(StrictSerializer):
    """How the tenant's admin is told that a job ended."""

    email = StrictBooleanField(required=False, help_text="Email the admin when a job ends (default true).")
    webhooks = WebhookSerializer(many=True, required=False, max_length=MAX_WEBHOOKS)


class TenantSettingsSerializer(StrictSerializer):
    """The tenant's settings; what is not given takes the tier's default. Unknown keys are refused."""

    default_error_messages = {"not_a_dict": "Expected a JSON object (a dictionary of settings)."}

    timezone = TimezoneField(required=False)
    locale = StrictCharField(required=False, max_length=35, validators=[RegexValidator(
        LOCALE_PATTERN, "Must be a language tag such as en-US or fr.")])
    notifications = NotificationsSerializer(required=False)
    dataRetentionDays = StrictIntegerField(required=False, min_value=1, max_value=3650)
    maxConcurrentQueries = StrictIntegerField(required=False, min_value=1, max_value=1000)
    queryTimeoutSeconds = StrictIntegerField(required=False, min_value=1, max_value=86400)
    quotas = QuotasField(required=False)
    customConfig = CustomConfigSerializer(required=False)

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
    """The Azure service principal Terraform uses (ENTERPRISE); the secret is encrypted, never returned or logged."""

    clientId = StrictCharField(max_length=100)
    clientSecret = StrictCharField(max_length=500, trim_whitespace=False)
    azureTenantId = StrictCharField(max_length=100)
    subscriptionId = StrictCharField(max_length=100)


class FaultSerializer(StrictSerializer):
    """Fail a step's first `times` attempts (transient) or every attempt (permanent)."""

    mode = serializers.ChoiceField(choices=["transient", "permanent"])
    times = serializers.IntegerField(min_value=1, max_value=1000, required=False, default=1)


class SimulateSerializer(StrictSerializer):
    """Fault injection: operators only, and only with the simulated cloud (else 400)."""

    faults = serializers.DictField(child=FaultSerializer(), required=False, default=dict)
    timeScale = serializers.FloatField(min_value=0, max_value=10, required=False)

    def validate_faults(self, faults: dict) -> dict:
        unknown = sorted(set(faults) - ALL_STEP_NAMES)
        if unknown:
            raise serializers.ValidationError(
                f"Unknown step(s) {', '.join(unknown)}; known steps: {', '.join(sorted(ALL_STEP_NAMES))}."
            )
        return faults


@extend_schema_field({"type": "string", "minLength": 1, "maxLength": 200,
                      "description": "1-200 characters, not only spaces."})
class NameField(StrictCharField):
    def __init__(self, **kwargs):
        super().__init__(min_length=1, max_length=200, **kwargs)


@extend_schema_field({
    "type": "string", "minLength": 3, "maxLength": 63, "pattern": SLUG_PATTERN.pattern,
    "not": {"enum": sorted(RESERVED_SLUGS)},
    "description": ("A DNS label: 3-63 lowercase letters, digits and hyphens, starting and ending with a letter or "
                    f"digit. Reserved: {', '.join(sorted(RESERVED_SLUGS))}."),
})
class SlugInputField(StrictCharField):
    def __init__(self, **kwargs):
        super().__init__(min_length=3, max_length=63, trim_whitespace=False, **kwargs)


class TenantRegistrationSerializer(StrictSerializer):
    """A tenant to register (validates every tier; the schema shows REGISTRATION_VARIANTS)."""

    name = NameField()
    slug = SlugInputField()
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
    """The tenant record of the seed. The fields the data plane fills are null until it does."""

    adminEmail = serializers.EmailField(source="admin_email")
    provisioningStartedAt = serializers.DateTimeField(source="provisioning_started_at", allow_null=True)
    provisionedAt = serializers.DateTimeField(source="provisioned_at", allow_null=True)
    deploymentType = serializers.ChoiceField(source="deployment_type", choices=DeploymentType.choices,
                                             allow_null=True)
    kubernetesNamespace = serializers.CharField(source="kubernetes_namespace", allow_null=True)
    azureAksClusterName = serializers.CharField(source="azure_aks_cluster_name", allow_null=True)
    dnsZone = serializers.CharField(source="dns_zone", allow_null=True)
    suspendedAt = serializers.DateTimeField(source="suspended_at", allow_null=True)
    suspensionReason = serializers.CharField(source="suspension_reason", allow_blank=True)
    deletionScheduledAt = serializers.DateTimeField(source="deletion_scheduled_at", allow_null=True,
                                                    help_text="When a tenant PENDING_DELETION is deprovisioned; "
                                                              "it can be restored until then.")
    deletedAt = serializers.DateTimeField(source="deleted_at", allow_null=True)
    createdAt = serializers.DateTimeField(source="created_at")

    class Meta:
        model = Tenant
        fields = [
            "id", "name", "slug", "tier", "status", "region", "adminEmail", "provisioningStartedAt",
            "provisionedAt", "deploymentType", "kubernetesNamespace", "azureAksClusterName", "dnsZone",
            "suspendedAt", "suspensionReason", "deletionScheduledAt", "deletedAt", "createdAt",
        ]
        read_only_fields = fields


class RegistrationResponseSerializer(TenantSerializer):
    adminApiKey = serializers.CharField(help_text="The admin's API key: shown this once, never again.")
    provisioningJobId = serializers.UUIDField()

    class Meta(TenantSerializer.Meta):
        fields = TenantSerializer.Meta.fields + ["adminApiKey", "provisioningJobId"]


# --- the registration body as the schema shows it: one variant per tier ---------------------------------------
# TenantRegistrationSerializer validates; these only describe what it accepts for each tier (the service
# principal only for ENTERPRISE, the settings each tier takes, the faults of the tier's own steps), so a
# client or a fuzzer that keeps to the schema is never refused.

FAULT_SCHEMA = {
    "type": "object", "additionalProperties": False, "required": ["mode"],
    "properties": {"mode": {"type": "string", "enum": ["transient", "permanent"]},
                   "times": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 1}},
}


def _one_value_field(value: str):
    @extend_schema_field({"type": "string", "enum": [value]})
    class OneValue(serializers.CharField):
        pass

    return OneValue()


def _faults_field(tier: str):
    steps = plan_for(tier).step_names

    @extend_schema_field({"type": "object", "additionalProperties": False,
                          "properties": {step: FAULT_SCHEMA for step in steps},
                          "description": f"Steps of the {tier} plan to fail: {', '.join(steps)}."})
    class Faults(serializers.DictField):
        pass

    return Faults(required=False)


class SharedTenantSettingsSerializer(TenantSettingsSerializer):
    """A FREE or PROFESSIONAL tenant's settings (quotas and customConfig are ENTERPRISE only)."""

    quotas = None
    customConfig = None


def _registration_variant(tier: str) -> type[TenantRegistrationSerializer]:
    label = tier.title()
    simulate = type(f"{label}SimulateSerializer", (SimulateSerializer,), {
        "faults": _faults_field(tier), "__doc__": SimulateSerializer.__doc__})
    fields = {
        "tier": _one_value_field(tier),
        "settings": (TenantSettingsSerializer if tier == Tier.ENTERPRISE else SharedTenantSettingsSerializer)(
            required=False),
        "simulate": simulate(required=False),
        "servicePrincipal": ServicePrincipalSerializer() if tier == Tier.ENTERPRISE else None,
        "__doc__": (f"A {tier} tenant." + (" The Azure service principal is required; its secret is never returned."
                                           if tier == Tier.ENTERPRISE else " No service principal (ENTERPRISE only).")),
    }
    return type(f"{label}TenantRegistrationSerializer", (TenantRegistrationSerializer,), fields)


REGISTRATION_VARIANTS = {tier: _registration_variant(tier) for tier in Tier.values}
