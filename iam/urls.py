from django.urls import path

from iam.api import TenantApiKey, TenantApiKeys

urlpatterns = [
    path("tenants/<uuid:tenant_id>/api-keys", TenantApiKeys.as_view(), name="tenant-api-keys"),
    path("tenants/<uuid:tenant_id>/api-keys/<uuid:key_id>", TenantApiKey.as_view(), name="tenant-api-key"),
]
