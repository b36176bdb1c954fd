"""HTTP for provisioning: thin views over provisioning.selectors and provisioning.services."""
from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from matih.api import error_response
from provisioning import selectors, services
from tenants.selectors import tenant_visible_to

StatusSchema = inline_serializer("ProvisioningStatus", {
    "tenantId": serializers.UUIDField(), "jobId": serializers.UUIDField(), "tier": serializers.CharField(),
    "status": serializers.CharField(), "jobStatus": serializers.CharField(),
    "currentPhase": serializers.CharField(), "completedPhases": serializers.ListField(child=serializers.CharField()),
    "remainingPhases": serializers.ListField(child=serializers.CharField()), "progress": serializers.IntegerField(),
    "startedAt": serializers.DateTimeField(), "estimatedCompletion": serializers.DateTimeField(),
    "completedAt": serializers.DateTimeField(), "retryCount": serializers.IntegerField(),
    "maxRetries": serializers.IntegerField(), "nextRetryAt": serializers.DateTimeField(),
    "errorMessage": serializers.CharField(), "steps": serializers.ListField(child=serializers.DictField()),
})


class TenantScopedView(APIView):
    def tenant_or_404(self, request, tenant_id):
        return tenant_visible_to(request.auth, tenant_id)

    def not_found(self) -> Response:
        return error_response("not_found", "No such tenant.", status.HTTP_404_NOT_FOUND)


class ProvisioningStatusView(TenantScopedView):
    @extend_schema(responses={200: StatusSchema})
    def get(self, request, tenant_id):
        tenant = self.tenant_or_404(request, tenant_id)
        if tenant is None:
            return self.not_found()
        return Response(selectors.provisioning_status(tenant))


class ProvisioningRetryView(TenantScopedView):
    @extend_schema(request=None, responses={202: StatusSchema})
    def post(self, request, tenant_id):
        tenant = self.tenant_or_404(request, tenant_id)
        if tenant is None:
            return self.not_found()
        try:
            services.retry(tenant=tenant, initiated_by=request.user)
        except services.ActionRefused as exc:
            return error_response("conflict", str(exc), status.HTTP_409_CONFLICT)
        tenant.refresh_from_db()
        return Response(selectors.provisioning_status(tenant), status=status.HTTP_202_ACCEPTED)


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
    def get(self, request, tenant_id):
        tenant = self.tenant_or_404(request, tenant_id)
        if tenant is None:
            return self.not_found()
        return Response({"results": selectors.jobs_of(tenant)})


class ProvisioningEventsView(TenantScopedView):
    @extend_schema(parameters=[OpenApiParameter("after", int, description="Only events with a greater seq.")])
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
