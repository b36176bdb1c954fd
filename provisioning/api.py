"""HTTP for provisioning: thin views over provisioning.selectors and provisioning.services."""
from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from matih.api import error_response, not_found
from billing.models import Tier
from provisioning import selectors, services
from provisioning.models import JobKind, JobStatus, StepStatus
from tenants.models import TenantStatus
from tenants.selectors import tenant_visible_to

# --- the answers' shapes, for the OpenAPI schema (provisioning.selectors builds the answers) ------------------


class StepSchema(serializers.Serializer):
    name = serializers.CharField()
    phase = serializers.CharField()
    status = serializers.ChoiceField(choices=StepStatus.choices)
    attempts = serializers.IntegerField(min_value=0)
    startedAt = serializers.DateTimeField(allow_null=True)
    finishedAt = serializers.DateTimeField(allow_null=True)
    durationMs = serializers.IntegerField(allow_null=True)
    error = serializers.CharField(allow_null=True)

    class Meta:
        ref_name = "ProvisioningStep"


class _RunSchema(serializers.Serializer):
    """What the status and a job both say of a job's run."""

    startedAt = serializers.DateTimeField(allow_null=True)
    completedAt = serializers.DateTimeField(allow_null=True)
    errorMessage = serializers.CharField(allow_null=True)
    retryCount = serializers.IntegerField(min_value=0)
    maxRetries = serializers.IntegerField(min_value=0)
    nextRetryAt = serializers.DateTimeField(allow_null=True)


class StatusSchema(_RunSchema):
    tenantId = serializers.UUIDField()
    jobId = serializers.UUIDField(allow_null=True, help_text="The tenant's latest job, of any kind; null when it has "
                                                            "none.")
    kind = serializers.ChoiceField(choices=JobKind.choices, allow_null=True, help_text="What the job does.")
    fromTier = serializers.ChoiceField(choices=Tier.choices, allow_null=True, help_text="A tier change's former tier.")
    toTier = serializers.ChoiceField(choices=Tier.choices, allow_null=True, help_text="A tier change's new tier.")
    tier = serializers.ChoiceField(choices=Tier.choices)
    status = serializers.ChoiceField(choices=TenantStatus.choices, help_text="The tenant's status.")
    jobStatus = serializers.ChoiceField(choices=JobStatus.choices, allow_null=True)
    currentPhase = serializers.CharField(allow_null=True, help_text="A phase of the plan, or COMPLETED.")
    completedPhases = serializers.ListField(child=serializers.CharField())
    remainingPhases = serializers.ListField(child=serializers.CharField(), help_text="Excludes the current phase.")
    progress = serializers.IntegerField(min_value=0, max_value=100, help_text="Never decreases; 100 only when "
                                        "COMPLETED.")
    estimatedCompletion = serializers.DateTimeField(allow_null=True)
    version = serializers.IntegerField(required=False, help_text="The job's version: grows with every change.")
    steps = StepSchema(many=True)

    class Meta:
        ref_name = "ProvisioningStatus"


class JobSchema(_RunSchema):
    id = serializers.UUIDField()
    kind = serializers.ChoiceField(choices=JobKind.choices)
    fromTier = serializers.ChoiceField(choices=Tier.choices, allow_null=True)
    toTier = serializers.ChoiceField(choices=Tier.choices, allow_null=True)
    tier = serializers.ChoiceField(choices=Tier.choices, help_text="The tier the job's plan is for.")
    status = serializers.ChoiceField(choices=JobStatus.choices)
    currentPhase = serializers.CharField(help_text="A phase of the job's plan, or COMPLETED.")
    initiatedBy = serializers.UUIDField(allow_null=True)
    createdAt = serializers.DateTimeField()
    progress = serializers.IntegerField(min_value=0, max_value=100)
    steps = StepSchema(many=True)

    class Meta:
        ref_name = "ProvisioningJob"


class JobListSchema(serializers.Serializer):
    results = JobSchema(many=True, help_text="Newest first.")

    class Meta:
        ref_name = "ProvisioningJobList"


class EventSchema(serializers.Serializer):
    seq = serializers.IntegerField(min_value=1)
    kind = serializers.CharField()
    step = serializers.CharField(allow_null=True)
    message = serializers.CharField(allow_blank=True)
    data = serializers.DictField()
    at = serializers.DateTimeField()

    class Meta:
        ref_name = "ProvisioningEvent"


class EventListSchema(serializers.Serializer):
    jobId = serializers.UUIDField(allow_null=True, help_text="The latest job's; null when the tenant has none.")
    results = EventSchema(many=True, help_text="In order of seq.")

    class Meta:
        ref_name = "ProvisioningEventList"


class TenantScopedView(APIView):
    def tenant_or_404(self, request, tenant_id):
        return tenant_visible_to(request.auth, tenant_id)

    def not_found(self) -> Response:
        return not_found()


class ProvisioningStatusView(TenantScopedView):
    @extend_schema(responses={200: StatusSchema})
    def get(self, request, tenant_id):
        tenant = self.tenant_or_404(request, tenant_id)
        if tenant is None:
            return self.not_found()
        return Response(selectors.provisioning_status(tenant))


class ProvisioningCancelView(TenantScopedView):
    @extend_schema(request=None, responses={202: StatusSchema})
    def post(self, request, tenant_id):
        tenant = self.tenant_or_404(request, tenant_id)
        if tenant is None:
            return self.not_found()
        job = selectors.latest_job(tenant.id)
        if job is None:
            return error_response("conflict", "The tenant has no provisioning job.", status.HTTP_409_CONFLICT)
        try:
            services.cancel(job=job, actor=request.user.email)
        except services.ActionRefused as exc:
            return error_response("conflict", str(exc), status.HTTP_409_CONFLICT)
        return Response(selectors.provisioning_status(tenant), status=status.HTTP_202_ACCEPTED)


class ProvisioningJobsView(TenantScopedView):
    @extend_schema(responses={200: JobListSchema})
    def get(self, request, tenant_id):
        tenant = self.tenant_or_404(request, tenant_id)
        if tenant is None:
            return self.not_found()
        return Response({"results": selectors.jobs_of(tenant)})


class ProvisioningEventsView(TenantScopedView):
    @extend_schema(
        parameters=[OpenApiParameter("after", {"type": "integer", "minimum": 0}, description="Only events with a "
                                     "greater seq (default 0: from the first).")],
        responses={200: EventListSchema},
    )
    def get(self, request, tenant_id):
        tenant = self.tenant_or_404(request, tenant_id)
        if tenant is None:
            return self.not_found()
        raw_after = request.query_params.get("after", "0")
        if not raw_after.isdigit():
            return error_response("invalid_request", "after must be a non-negative integer.",
                                  status.HTTP_400_BAD_REQUEST, {"after": ["Must be a non-negative integer."]})
        job = selectors.latest_job(tenant.id)
        events = selectors.events_of(job, after=int(raw_after)) if job else []
        return Response({"jobId": str(job.id) if job else None, "results": events})
