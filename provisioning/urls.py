from django.urls import path

from provisioning import api
from provisioning.live import sse as stream

urlpatterns = [
    path("tenants/<uuid:tenant_id>/provisioning/status", api.ProvisioningStatusView.as_view(),
         name="provisioning-status"),
    path("tenants/<uuid:tenant_id>/provisioning/status/stream", stream.status_stream,
         name="provisioning-status-stream"),
    path("tenants/<uuid:tenant_id>/provisioning/retry", api.ProvisioningRetryView.as_view(),
         name="provisioning-retry"),
    path("tenants/<uuid:tenant_id>/provisioning/cancel", api.ProvisioningCancelView.as_view(),
         name="provisioning-cancel"),
    path("tenants/<uuid:tenant_id>/provisioning/jobs", api.ProvisioningJobsView.as_view(), name="provisioning-jobs"),
    path("tenants/<uuid:tenant_id>/provisioning/events", api.ProvisioningEventsView.as_view(),
         name="provisioning-events"),
]
