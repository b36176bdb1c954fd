"""HTTP for the tenant's life (DESIGN.md section 6): upgrade, suspend, activate, delete, restore,
and the inventory. Thin: an input serializer validates, provisioning.lifecycle acts, the answer
is the status (or the tenant record) the other views give.

Who: O = an operator key, T = the tenant's own key; another tenant's id is a 404, an action
for operators only is a 403 for a tenant key. Every POST and DELETE that starts a job honours
an `Idempotency-Key` header: the same key and request answer the same, nothing is started twice;
the same key with another request is a 409.
"""
from __future__ import annotations

from django.conf import settings
from django.db import IntegrityError, transaction
from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.response import Response

from billing.models import Tier
from iam.selectors import is_operator_key
from matih.api import error_response, idempotency_key_parameter, idempotency_key_problem
from matih.secrets import decrypt_json, encrypt_json
from matih.serializers import StrictSerializer
from provisioning import lifecycle, selectors
from provisioning.api import StatusSchema, TenantScopedView
from provisioning.engine.plans import PLANS, Kind, has_plan, plan_of
from provisioning.services import ActionRefused
from tenants.models import IdempotencyRecord, Tenant
from tenants.serializers import ServicePrincipalSerializer, SimulateSerializer, TenantSerializer
from tenants.services import Idempotency

IDEMPOTENCY_HEADER = idempotency_key_parameter(
    "The same key and request answer the same, and start the operation once (for 24 hours); the same key with "
    "another request is a 409.")


# --- input --------------------------------------------------------------------------------------------


def _simulate(serializer: serializers.Serializer, simulate: dict, plan_key: tuple | None) -> dict:
    """Fault injection for an operation: operators, the simulated cloud, steps the operation's plan has
    (`plan_key`; None when the operation cannot run now: its 409 comes first)."""
    from provisioning.engine.plans import ALL_STEP_NAMES

    if settings.MATIH_INFRA_BACKEND != "simulated":
        raise serializers.ValidationError("Fault injection needs the simulated cloud (MATIH_INFRA_BACKEND=simulated).")
    if not serializer.context.get("is_operator"):
        raise serializers.ValidationError("Only platform operators may inject faults.")
    faults = set(simulate.get("faults") or {})
    unknown = sorted(faults - ALL_STEP_NAMES)
    if unknown:
        raise serializers.ValidationError({"faults": [f"Unknown step(s) {', '.join(unknown)}."]})
    if plan_key and has_plan(*plan_key):
        steps = set(plan_of(*plan_key).step_names)
        foreign = sorted(faults - steps)
        if foreign:
            raise serializers.ValidationError(
                {"faults": [f"Not a step of this operation: {', '.join(foreign)}; its steps: {', '.join(sorted(steps))}."]})
    return simulate


class UpgradeSerializer(StrictSerializer):
    newTier = serializers.ChoiceField(choices=Tier.choices,
                                      error_messages={"invalid_choice": f"Must be one of {', '.join(Tier.values)}."})
    servicePrincipal = ServicePrincipalSerializer(required=False,
                                                  help_text="Required to move to ENTERPRISE; ENTERPRISE only.")
    simulate = SimulateSerializer(required=False, help_text="Operators, simulated cloud only.")

    def validate(self, data: dict) -> dict:
        tenant: Tenant = self.context["tenant"]
        if data.get("servicePrincipal") and data["newTier"] != Tier.ENTERPRISE:
            raise serializers.ValidationError({"servicePrincipal": ["ENTERPRISE only."]})
        if data.get("simulate") is not None:
            try:
                data["simulate"] = _simulate(self, data["simulate"], (Kind.CHANGE_TIER, data["newTier"], tenant.tier))
            except serializers.ValidationError as exc:
                raise serializers.ValidationError({"simulate": exc.detail}) from None
        return data


def _faults_of(plans: list) -> type:
    steps = sorted({name for plan in plans for name in plan.step_names})
    from tenants.serializers import FAULT_SCHEMA

    @extend_schema_field({"type": "object", "additionalProperties": False,
                          "properties": {step: FAULT_SCHEMA for step in steps},
                          "description": f"Steps of this operation to fail: {', '.join(steps)}."})
    class Faults(serializers.DictField):
        pass

    return Faults


def _simulate_for(label: str, plans: list) -> type:
    return type(f"{label}SimulateSerializer", (SimulateSerializer,), {
        "faults": _faults_of(plans)(required=False), "__doc__": SimulateSerializer.__doc__})


def _upgrade_variant(tier: str) -> type:
    from tenants.serializers import _one_value_field

    plans = [plan for plan in PLANS.values() if plan.kind == Kind.CHANGE_TIER and plan.tier == tier]
    fields = {
        "newTier": _one_value_field(tier),
        "servicePrincipal": ServicePrincipalSerializer() if tier == Tier.ENTERPRISE else None,
        "simulate": _simulate_for(f"ChangeTo{tier.title()}", plans)(required=False),
        "__doc__": (f"To {tier}." + (" The Azure service principal of the tenant's subscription is required."
                                     if tier == Tier.ENTERPRISE else " No service principal (ENTERPRISE only).")),
    }
    return type(f"UpgradeTo{tier.title()}Serializer", (UpgradeSerializer,), fields)


UPGRADE_VARIANTS = {tier: _upgrade_variant(tier) for tier in Tier.values}


def _kind_simulate(kind: str) -> type:
    return _simulate_for(kind.title(), [plan for plan in PLANS.values() if plan.kind == kind])


class SuspendSerializer(StrictSerializer):
    reason = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")
    simulate = _kind_simulate(Kind.SUSPEND)(required=False, help_text="Operators, simulated cloud only.")

    def validate_simulate(self, simulate: dict) -> dict:
        return _simulate(self, simulate, (Kind.SUSPEND, self.context["tenant"].tier))


class ActivateSerializer(StrictSerializer):
    simulate = _kind_simulate(Kind.ACTIVATE)(required=False, help_text="Operators, simulated cloud only.")

    def validate_simulate(self, simulate: dict) -> dict:
        return _simulate(self, simulate, (Kind.ACTIVATE, self.context["tenant"].tier))


class DeleteSerializer(StrictSerializer):
    graceSeconds = serializers.IntegerField(min_value=0, max_value=365 * 24 * 3600, required=False,
                                            help_text="Operators only; default MATIH_DELETION_GRACE.")
    simulate = _simulate_for("Deletion", [plan for plan in PLANS.values()
                                          if plan.kind in (Kind.SUSPEND, Kind.DEPROVISION)])(
        required=False, help_text="Operators, simulated cloud: faults for the deletion's suspension and "
                                  "deprovisioning.")

    def validate_simulate(self, simulate: dict) -> dict:
        tier = self.context["tenant"].tier
        steps = set(plan_of(Kind.SUSPEND, tier).step_names) | set(plan_of(Kind.DEPROVISION, tier).step_names)
        _simulate(self, simulate, None)
        foreign = sorted(set(simulate.get("faults") or {}) - steps)
        if foreign:
            raise serializers.ValidationError({"faults": [f"Not a step of a deletion: {', '.join(foreign)}."]})
        return simulate

    def validate_graceSeconds(self, grace: int) -> int:
        if not self.context.get("is_operator"):
            raise serializers.ValidationError("Only platform operators may set the grace period.")
        return grace


class EmptySerializer(StrictSerializer):
    pass


class ResourceSchema(serializers.Serializer):
    kind = serializers.CharField()
    name = serializers.CharField()
    location = serializers.CharField(allow_blank=True)
    step = serializers.CharField()
    jobId = serializers.UUIDField()
    createdAt = serializers.DateTimeField()

    class Meta:
        ref_name = "TenantResource"


class ResourceListSchema(serializers.Serializer):
    results = ResourceSchema(many=True)

    class Meta:
        ref_name = "TenantResourceList"


# --- the views --------------------------------------------------------------------------------------------


def _refused(exc: ActionRefused) -> Response:
    return error_response(getattr(exc, "code", "conflict"), str(exc), status.HTTP_409_CONFLICT)


def _invalid(exc: lifecycle.Invalid) -> Response:
    return error_response("invalid_request", str(exc), status.HTTP_400_BAD_REQUEST, {exc.field: [exc.reason]})


class LifecycleView(TenantScopedView):
    operators_only = False
    input_serializer = EmptySerializer

    def act(self, request, tenant: Tenant, data: dict) -> Response:  # pragma: no cover - each view has its own
        raise NotImplementedError

    def handle(self, request, tenant_id) -> Response:
        tenant = self.tenant_or_404(request, tenant_id)
        if tenant is None:
            return self.not_found()
        operator = is_operator_key(request.auth)
        if self.operators_only and not operator:
            return error_response("forbidden", "Only platform operators may do this.", status.HTTP_403_FORBIDDEN)
        serializer = self.input_serializer(data=request.data if request.data is not None else {},
                                           context={"is_operator": operator, "tenant": tenant})
        serializer.is_valid(raise_exception=True)
        return idempotent(request, lambda: self.act(request, tenant, serializer.validated_data))


def idempotent(request, run) -> Response:
    """Run `run` once per Idempotency-Key: its answer is stored with what it did, in one transaction."""
    raw = request.headers.get("Idempotency-Key")
    malformed = idempotency_key_problem(raw)
    if malformed is not None:
        return malformed
    if raw is None:
        return run()
    key = Idempotency.for_request(principal=str(request.auth.id), key=f"{request.method} {request.path}:{raw}",
                                  body=request.data if isinstance(request.data, dict) else {})

    def replay() -> Response | None:
        record = IdempotencyRecord.objects.filter(principal=key.principal, key=key.key[:255]).first()
        if record is None:
            return None
        if record.request_hash != key.request_hash:
            return error_response("idempotency_key_reused", "This Idempotency-Key was used with a different request.",
                                  status.HTTP_409_CONFLICT)
        return Response(decrypt_json(record.response_body_encrypted), status=record.response_status,
                        headers={"Idempotent-Replayed": "true"})

    answered = replay()
    if answered is not None:
        return answered
    try:
        with transaction.atomic():
            response = run()
            if 200 <= response.status_code < 300:
                IdempotencyRecord.objects.create(
                    principal=key.principal, key=key.key[:255], request_hash=key.request_hash,
                    response_status=response.status_code, response_body_encrypted=encrypt_json(response.data))
            return response
    except IntegrityError:
        return replay() or error_response("conflict", "A request with this Idempotency-Key is in progress.",
                                          status.HTTP_409_CONFLICT)


def _status_answer(tenant: Tenant) -> Response:
    tenant.refresh_from_db()
    return Response(selectors.provisioning_status(tenant), status=status.HTTP_202_ACCEPTED)


class UpgradeView(LifecycleView):
    input_serializer = UpgradeSerializer

    @extend_schema(request=PolymorphicProxySerializer(component_name="TenantUpgrade", serializers=UPGRADE_VARIANTS,
                                                      resource_type_field_name="newTier"),
                   responses={202: StatusSchema}, parameters=[IDEMPOTENCY_HEADER],
                   summary="Change the tenant's tier (a CHANGE_TIER job)",
                   description="Any other tier; ENTERPRISE needs the service principal of the tenant's own Azure "
                               "subscription, and an ENTERPRISE tenant cannot move down (409 downgrade_unsupported). "
                               "409 invalid_state unless the tenant is ACTIVE with no job open.")
    def post(self, request, tenant_id):
        return self.handle(request, tenant_id)

    def act(self, request, tenant, data):
        try:
            lifecycle.change_tier(tenant=tenant, new_tier=data["newTier"], service_principal=data.get("servicePrincipal"),
                                  simulate=data.get("simulate"), initiated_by=request.user)
        except lifecycle.Invalid as exc:
            return _invalid(exc)
        except ActionRefused as exc:
            return _refused(exc)
        return _status_answer(tenant)


class SuspendView(LifecycleView):
    operators_only = True
    input_serializer = SuspendSerializer

    @extend_schema(request=SuspendSerializer, responses={202: StatusSchema}, parameters=[IDEMPOTENCY_HEADER],
                   summary="Suspend an ACTIVE tenant (operators)")
    def post(self, request, tenant_id):
        return self.handle(request, tenant_id)

    def act(self, request, tenant, data):
        try:
            lifecycle.suspend(tenant=tenant, reason=data.get("reason", ""), simulate=data.get("simulate"),
                              initiated_by=request.user)
        except ActionRefused as exc:
            return _refused(exc)
        return _status_answer(tenant)


class ActivateView(LifecycleView):
    operators_only = True
    input_serializer = ActivateSerializer

    @extend_schema(request=ActivateSerializer, responses={202: StatusSchema}, parameters=[IDEMPOTENCY_HEADER],
                   summary="Activate a SUSPENDED tenant (operators)")
    def post(self, request, tenant_id):
        return self.handle(request, tenant_id)

    def act(self, request, tenant, data):
        try:
            lifecycle.activate(tenant=tenant, simulate=data.get("simulate"), initiated_by=request.user)
        except ActionRefused as exc:
            return _refused(exc)
        return _status_answer(tenant)


class RestoreView(LifecycleView):
    operators_only = True

    @extend_schema(request=None, responses={202: TenantSerializer}, parameters=[IDEMPOTENCY_HEADER],
                   summary="Restore a tenant PENDING_DELETION before its deletion time (operators)")
    def post(self, request, tenant_id):
        return self.handle(request, tenant_id)

    def act(self, request, tenant, data):
        try:
            restored = lifecycle.restore(tenant=tenant, initiated_by=request.user)
        except ActionRefused as exc:
            return _refused(exc)
        return Response(TenantSerializer(restored).data, status=status.HTTP_202_ACCEPTED)


class DeleteTenant(LifecycleView):
    """DELETE /tenants/{id}: PENDING_DELETION, deprovisioned when the grace period ends (TenantDetail's DELETE)."""

    input_serializer = DeleteSerializer

    def act(self, request, tenant, data):
        try:
            pending = lifecycle.request_deletion(tenant=tenant, grace_seconds=data.get("graceSeconds"),
                                                 simulate=data.get("simulate"), initiated_by=request.user)
        except lifecycle.Invalid as exc:
            return _invalid(exc)
        except ActionRefused as exc:
            return _refused(exc)
        return Response(TenantSerializer(pending).data, status=status.HTTP_202_ACCEPTED)


delete_tenant_schema = extend_schema(request=DeleteSerializer, responses={202: TenantSerializer},
                                     parameters=[IDEMPOTENCY_HEADER],
                                     summary="Delete the tenant: PENDING_DELETION, deprovisioned after the grace period")


class ResourcesView(TenantScopedView):
    @extend_schema(responses={200: ResourceListSchema}, summary="What the tenant has now (the inventory)")
    def get(self, request, tenant_id):
        tenant = self.tenant_or_404(request, tenant_id)
        if tenant is None:
            return self.not_found()
        return Response({"results": selectors.resources_of(tenant)})


class RetrySerializer(StrictSerializer):
    simulate = _simulate_for("Retry", list(PLANS.values()))(required=False, help_text="Replaces the job's fault injection (operators, "
                                                            "simulated cloud): {\"faults\": {}} clears it.")

    def validate_simulate(self, simulate: dict) -> dict:
        """Against the plan the retry would run; nothing to retry (409 below): none to check against."""
        from provisioning.models import JobStatus

        tenant: Tenant = self.context["tenant"]
        job = selectors.latest_job(tenant.id)
        retryable = job is not None and job.status in (JobStatus.RETRY_SCHEDULED, JobStatus.FAILED,
                                                       JobStatus.CANCELLED)
        key = (job.kind, job.tier, job.from_tier) if retryable else None
        return _simulate(self, simulate, key)


class RetryView(LifecycleView):
    """POST .../provisioning/retry: a RETRY_SCHEDULED job resumes now; a FAILED or CANCELLED provisioning
    starts anew; a job that failed forward (a deprovisioning) goes on from where it stopped."""

    input_serializer = RetrySerializer

    @extend_schema(request=RetrySerializer, responses={202: StatusSchema}, parameters=[IDEMPOTENCY_HEADER])
    def post(self, request, tenant_id):
        return self.handle(request, tenant_id)

    def act(self, request, tenant, data):
        from provisioning import services

        try:
            services.retry(tenant=tenant, initiated_by=request.user, simulate=data.get("simulate"))
        except ActionRefused as exc:
            return _refused(exc)
        return _status_answer(tenant)
