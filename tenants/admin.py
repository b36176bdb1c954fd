"""Tenants in the admin: to look at, not to edit by hand.

Tenants come from registration, and what operations own (tier, status, where the tenant
runs, its service principal, its error) changes only through operations, which are jobs of
the engine: the page shows them read-only, there is no "Add tenant" and no delete
(deletion is an operation with a grace period). An operator may correct the name and the
admin's email, and edit the settings. Operations on a tenant are its page's buttons
(`object_actions`, provisioning.dashboard.actions).
"""
from __future__ import annotations

from django import forms
from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from billing.models import Tier
from provisioning import lifecycle, services
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


class UpgradeForm(forms.Form):
    new_tier = forms.ChoiceField(label="New tier", choices=Tier.choices)
    client_id = forms.CharField(label="Service principal: client id", required=False,
                                help_text="To ENTERPRISE only: the service principal of the tenant's own subscription.")
    client_secret = forms.CharField(label="client secret", required=False, widget=forms.PasswordInput)
    azure_tenant_id = forms.CharField(label="Azure tenant id", required=False)
    subscription_id = forms.CharField(label="subscription id", required=False)

    PRINCIPAL = {"clientId": "client_id", "clientSecret": "client_secret", "azureTenantId": "azure_tenant_id",
                 "subscriptionId": "subscription_id"}

    def clean(self):
        data = super().clean()
        given = {key: data.get(field) for key, field in self.PRINCIPAL.items() if data.get(field)}
        if data.get("new_tier") == Tier.ENTERPRISE and len(given) != len(self.PRINCIPAL):
            raise forms.ValidationError("Moving to ENTERPRISE needs the four fields of the service principal.")
        if data.get("new_tier") != Tier.ENTERPRISE and given:
            raise forms.ValidationError("A service principal is for ENTERPRISE only.")
        data["service_principal"] = given or None
        return data


class ReasonForm(forms.Form):
    reason = forms.CharField(max_length=500, required=False, help_text="Kept on the tenant: why it is suspended.")


class DeletionForm(forms.Form):
    grace_seconds = forms.IntegerField(label="Grace period (seconds)", min_value=0, required=False,
                                       help_text="Until then the tenant can be restored; empty: the default "
                                                 "(MATIH_DELETION_GRACE).")


def _refused(exc: Exception):
    raise services.ActionRefused(str(exc)) from exc


def _upgrade(request: HttpRequest, tenant: Tenant, data: dict) -> str:
    try:
        job = lifecycle.change_tier(tenant=tenant, new_tier=data["new_tier"],
                                    service_principal=data.get("service_principal"), initiated_by=request.user)
    except lifecycle.Invalid as exc:
        _refused(exc)
    return f"{tenant.slug} is moving from {tenant.tier} to {job.tier} (job {job.id})."


def _suspend(request: HttpRequest, tenant: Tenant, data: dict) -> str:
    job = lifecycle.suspend(tenant=tenant, reason=data.get("reason") or "", initiated_by=request.user)
    return f"{tenant.slug} is being suspended (job {job.id})."


def _activate(request: HttpRequest, tenant: Tenant, data: dict) -> str:
    job = lifecycle.activate(tenant=tenant, initiated_by=request.user)
    return f"{tenant.slug} is being activated (job {job.id})."


def _delete(request: HttpRequest, tenant: Tenant, data: dict) -> str:
    try:
        pending = lifecycle.request_deletion(tenant=tenant, grace_seconds=data.get("grace_seconds"),
                                             initiated_by=request.user)
    except lifecycle.Invalid as exc:
        _refused(exc)
    when = pending.deletion_scheduled_at.strftime("%Y-%m-%d %H:%M:%S")
    return f"{tenant.slug} is PENDING_DELETION; it is deprovisioned at {when} UTC and can be restored until then."


def _restore(request: HttpRequest, tenant: Tenant, data: dict) -> str:
    restored = lifecycle.restore(tenant=tenant, initiated_by=request.user)
    return f"{tenant.slug} is restored: {restored.status}."


TENANT_ACTIONS = (
    ObjectAction("retry-provisioning", "Retry provisioning", _retry_provisioning,
                 applies=lambda tenant: tenant.status == TenantStatus.FAILED,
                 confirm="A new provisioning job starts from the first step; what the failed job made was "
                         "undone when it failed."),
    ObjectAction("upgrade", "Change tier", _upgrade, applies=lambda tenant: tenant.status == TenantStatus.ACTIVE
                 and tenant.tier != Tier.ENTERPRISE,
                 confirm="A CHANGE_TIER job starts: between the shared tiers, what the new tier adds or drops; to "
                         "ENTERPRISE, a dedicated cluster, the data copied and verified, then the DNS cut over. "
                         "If it fails it is undone and the tenant stays at its tier.", form=UpgradeForm),
    ObjectAction("suspend", "Suspend", _suspend, applies=lambda tenant: tenant.status == TenantStatus.ACTIVE,
                 confirm="Its workloads scale to zero, its quota admits no pods, its ingress answers 503. Its data "
                         "stays; activating brings it all back.", form=ReasonForm),
    ObjectAction("activate", "Activate", _activate, applies=lambda tenant: tenant.status == TenantStatus.SUSPENDED,
                 confirm="Its ingress lets traffic through again, its quota and workloads come back, and its "
                         "endpoints are verified."),
    ObjectAction("request-deletion", "Delete", _delete,
                 applies=lambda tenant: tenant.status in (TenantStatus.ACTIVE, TenantStatus.SUSPENDED,
                                                          TenantStatus.FAILED),
                 confirm="The tenant becomes PENDING_DELETION (an ACTIVE tenant is suspended at once). When the "
                         "grace period ends its data is exported and everything it has is removed, for good; "
                         "until then it can be restored.", form=DeletionForm),
    ObjectAction("restore", "Restore", _restore,
                 applies=lambda tenant: tenant.status == TenantStatus.PENDING_DELETION,
                 confirm="The deletion is called off: the tenant goes back to what it was (an ACTIVE tenant comes "
                         "back suspended, then is activated)."),
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
