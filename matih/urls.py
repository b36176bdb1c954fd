from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from matih import health
from provisioning.dashboard.views import dashboard_view

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", health.metrics, name="metrics"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("api/v1/", include("tenants.urls")),
    path("api/v1/", include("provisioning.urls")),
    path("admin/provisioning/dashboard/", admin.site.admin_view(dashboard_view), name="provisioning-dashboard"),
    path("admin/", admin.site.urls),
]
