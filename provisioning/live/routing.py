from django.urls import path

from provisioning.live.consumers import DashboardConsumer, TenantStatusConsumer

websocket_urlpatterns = [
    path("ws/tenants/<uuid:tenant_id>/provisioning/", TenantStatusConsumer.as_asgi()),
    path("ws/provisioning/", DashboardConsumer.as_asgi()),
]
