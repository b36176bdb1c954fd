from django.contrib import admin

from tenants.models import Tenant, TenantSettings


class TenantSettingsInline(admin.StackedInline):
    model = TenantSettings
    can_delete = False


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = ("slug", "name", "status", "tier", "region", "kubernetes_namespace", "created_at")
    list_filter = ("status", "tier", "region", "deployment_type")
    search_fields = ("slug", "name", "admin_email", "id")
    readonly_fields = ("id", "created_at", "updated_at", "provisioning_started_at", "provisioned_at")
    exclude = ("service_principal_encrypted",)
    inlines = [TenantSettingsInline]
