from django.urls import path

from tenants.api import TenantBySlug, TenantDetail, TenantListCreate

urlpatterns = [
    path("tenants", TenantListCreate.as_view(), name="tenant-list"),
    path("tenants/<uuid:tenant_id>", TenantDetail.as_view(), name="tenant-detail"),
    path("tenants/slug/<slug:slug>", TenantBySlug.as_view(), name="tenant-by-slug"),
]
