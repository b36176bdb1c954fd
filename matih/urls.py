from django.contrib import admin
from django.templatetags.static import static
from django.views.generic import RedirectView
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from matih import health
from matih.paths import ApiPathFallback
from provisioning.dashboard.views import dashboard_view

urlpatterns = [
    # Browsers ask for it on every page; a 404 in every log line helps nobody.
    path("favicon.ico", RedirectView.as_view(url=static("provisioning/favicon.svg"), permanent=True)),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", health.metrics, name="metrics"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("api/v1/", include("tenants.urls")),
    path("api/v1/", include("iam.urls")),
    path("api/v1/", include("provisioning.urls")),
    path("admin/provisioning/dashboard/", admin.site.admin_view(dashboard_view), name="provisioning-dashboard"),
    path("admin/", admin.site.urls),
]
# Last: every path under /api/ in its other spellings (trailing slash, UUID case), else a JSON 404.
urlpatterns.append(ApiPathFallback(urlpatterns))

# Django's error pages, as JSON in the error shape under /api/ and /ws/ (HTML elsewhere).
handler400 = "matih.api.bad_request"
handler403 = "matih.api.permission_denied"
handler404 = "matih.api.page_not_found"
handler500 = "matih.api.server_error"
