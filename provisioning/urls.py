from django.urls import path

from provisioning import api, lifecycle_api
from provisioning.live import sse as stream

urlpatterns = [
    path("tenants/<uuid:tenant_id>/provisioning/status", api.ProvisioningStatusView.as_view(),
         name="provisioning-status"),
    path("tenants/<uuid:tenant_id>/provisioning/status/stream", stream.status_stream,
         name="provisioning-status-stream"),
    path("tenants/<uuid:tenant_id>/provisioning/retry", lifecycle_api.RetryView.as_view(),
         name="provisioning-retry"),
    path("tenants/<uuid:tenant_id>/provisioning/cancel", api.ProvisioningCancelView.as_view(),
         name="provisioning-cancel"),
    path("tenants/<uuid:tenant_id>/provisioning/jobs", api.ProvisioningJobsView.as_view(), name="provisioning-jobs"),
    path("tenants/<uuid:tenant_id>/provisioning/events", api.ProvisioningEventsView.as_view(),
         name="provisioning-events"),
    path("tenants/<uuid:tenant_id>/upgrade", lifecycle_api.UpgradeView.as_view(), name="tenant-upgrade"),
    path("tenants/<uuid:tenant_id>/suspend", lifecycle_api.SuspendView.as_view(), name="tenant-suspend"),
    path("tenants/<uuid:tenant_id>/activate", lifecycle_api.ActivateView.as_view(), name="tenant-activate"),
    path("tenants/<uuid:tenant_id>/restore", lifecycle_api.RestoreView.as_view(), name="tenant-restore"),
    path("tenants/<uuid:tenant_id>/resources", lifecycle_api.ResourcesView.as_view(), name="tenant-resources"),
]
