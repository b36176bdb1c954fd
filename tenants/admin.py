"""Tenants in the admin: to look at, not to edit by hand.

Tenants come from registration, and what operations own (tier, status, where the tenant
runs, its service principal, its error) changes only through operations, which are jobs of
the engine: the page shows them read-only, there is no "Add tenant" and no delete
(deletion is an operation with a grace period). An operator may correct the name and the
admin's email, and edit the settings. Operations on a tenant are its page's buttons
(`object_actions`, provisioning.dashboard.actions).
"""
from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from provisioning import services
from provisioning.dashboard.actions import ObjectAction, ObjectActionsMixin
from provisioning.selectors import latest_job
from provisioning.templatetags.matih_dashboard import moment_field
from tenants.models import Tenant, TenantSettings, TenantStatus


class TenantSettingsInline(admin.StackedInline):
    model = TenantSettings
    can_delete = False


def _retry_provisioning(request: HttpRequest, tenant: Tenant, data: dict) -> str:
    job = services.retry(tenant=tenant, initiated_by=request.user)
    return f"{tenant.slug} is provisioning again (job {job.id})."


TENANT_ACTIONS = (
    ObjectAction("retry-provisioning", "Retry provisioning", _retry_provisioning,
                 applies=lambda tenant: tenant.status == TenantStatus.FAILED,
                 confirm="A new provisioning job starts from the first step; what the failed job made was "
                         "undone when it failed."),
)


@admin.register(Tenant)
class TenantAdmin(ObjectActionsMixin, admin.ModelAdmin):
    list_display = ("slug", "name", "status", "tier", "region", "kubernetes_namespace", "created_at")
    list_filter = ("status", "tier", "region", "deployment_type")
    search_fields = ("slug", "name", "admin_email", "id")
    object_actions = TENANT_ACTIONS
    fieldsets = (
        (None, {"fields": ("name", "admin_email", "slug", "id")}),
        ("Lifecycle (changed only by operations)", {"fields": (
            "status", "tier", "latest_job", "error_message", "provisioning_started", "provisioned")}),
        ("Where it runs", {"fields": (
            "region", "deployment_type", "kubernetes_namespace", "aks_cluster", "dns", "service_principal")}),
        ("Record", {"fields": ("created", "updated")}),
    )
    # Everything but the name, the admin's email (and the settings, inline).
    readonly_fields = ("slug", "id", "status", "tier", "latest_job", "error_message", "provisioning_started",
                       "provisioned", "region", "deployment_type", "kubernetes_namespace", "aks_cluster", "dns",
                       "service_principal", "created", "updated")
    inlines = [TenantSettingsInline]

    def has_add_permission(self, request) -> bool:
        return False  # tenants come from registration (POST /api/v1/tenants)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # deletion is an operation, with a grace period

    def change_view(self, request, object_id, form_url="", extra_context=None):
        tenant = self.get_object(request, object_id)
        extra = dict(extra_context or {})
        if tenant is not None:
            extra["buttons"] = self.buttons(request, tenant)
        return super().change_view(request, object_id, form_url, extra_context=extra)

    @admin.display(description="latest job")
    def latest_job(self, tenant: Tenant) -> str:
        job = latest_job(tenant.id)
        if job is None:
            return "-"
        url = reverse("admin:provisioning_provisioningjob_change", args=[job.id])
        jobs = reverse("admin:provisioning_provisioningjob_changelist") + f"?tenant__id__exact={tenant.id}"
        return format_html('<a href="{}">{} {}</a> (<a href="{}">all jobs</a>)', url, job.kind, job.status, jobs)

    @admin.display(description="Azure AKS cluster")
    def aks_cluster(self, tenant: Tenant) -> str:
        return tenant.azure_aks_cluster_name or "-"

    @admin.display(description="DNS zone")
    def dns(self, tenant: Tenant) -> str:
        return tenant.dns_zone or "-"

    @admin.display(description="service principal")
    def service_principal(self, tenant: Tenant) -> str:
        return "stored, encrypted (never shown)" if tenant.service_principal_encrypted else "-"

    provisioning_started = moment_field("provisioning_started_at", "provisioning started")
    provisioned = moment_field("provisioned_at", "provisioned")
    created = moment_field("created_at", "created")
    updated = moment_field("updated_at", "last change")
