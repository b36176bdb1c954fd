"""The Django admin as the provisioning dashboard.

Jobs: a list filtered by status and tier; a job page with its phase timeline
and its events; "retry now", "cancel" and "roll back" as list actions and as
buttons on the job page, calling provisioning.services like the API does.
The dashboard page (/admin/provisioning/dashboard/) is provisioning.dashboard.views,
routed in matih/urls.py and linked from the admin index.
"""
from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from provisioning import services
from provisioning.dashboard import queries as dashboard
from provisioning.models import JobStatus, ProvisioningEvent, ProvisioningJob, WebhookDelivery
from provisioning.selectors import latest_job

admin.site.index_template = "provisioning/admin_index.html"


def _actor(request: HttpRequest) -> str:
    return request.user.email or request.user.get_username()


def _retry_now(request: HttpRequest, job: ProvisioningJob) -> str:
    """A job waiting for its retry resumes now; the tenant's FAILED or CANCELLED last job starts anew."""
    if job.status == JobStatus.RETRY_SCHEDULED:
        services.job_resume_now(job=job, actor=_actor(request))
        return f"Job of {job.tenant.slug} resumed from its failed step."
    newest = latest_job(job.tenant_id)
    if newest is not None and newest.id != job.id:
        raise services.ActionRefused(f"{job.tenant.slug} has a newer job ({newest.status}); act on that one.")
    new_job = services.retry(tenant=job.tenant, initiated_by=request.user)
    return f"{job.tenant.slug} is provisioning again (job {new_job.id})."


def _cancel(request: HttpRequest, job: ProvisioningJob) -> str:
    services.cancel(job=job, actor=_actor(request))
    return f"Job of {job.tenant.slug} is cancelling: what it did is being undone."


def _roll_back(request: HttpRequest, job: ProvisioningJob) -> str:
    services.roll_back(job=job, actor=_actor(request))
    return f"Job of {job.tenant.slug} is rolling back."


JOB_ACTIONS = {"retry-now": _retry_now, "cancel": _cancel, "roll-back": _roll_back}


def perform(request: HttpRequest, job: ProvisioningJob, action: str) -> bool:
    """Run one action on one job; say what happened (or why not) in the admin's messages."""
    job = ProvisioningJob.objects.select_related("tenant").get(id=job.id)  # the status now, not the page's
    try:
        messages.success(request, JOB_ACTIONS[action](request, job))
        return True
    except services.ActionRefused as exc:
        messages.error(request, f"{job.tenant.slug}: {exc}")
        return False


class ProvisioningEventInline(admin.TabularInline):
    model = ProvisioningEvent
    fields = ("seq", "created_at", "kind", "step", "message")
    readonly_fields = fields
    ordering = ("seq",)
    extra = 0
    can_delete = False
    verbose_name_plural = "events"

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ProvisioningJob)
class ProvisioningJobAdmin(admin.ModelAdmin):
    list_display = ("short_id", "tenant_slug", "kind", "tier", "status", "phase", "retries", "next_retry_at",
                    "created_at")
    list_filter = ("status", "kind", "tier")
    search_fields = ("tenant__slug", "tenant__name", "=id")
    list_select_related = ("tenant",)
    ordering = ("-created_at",)
    date_hierarchy = "created_at"
    actions = ["retry_now", "cancel_jobs", "roll_back_jobs"]
    fields = ("tenant", "kind", "from_tier", "tier", "status", "phase", "retry_count", "max_retries",
              "next_retry_at", "error_message", "initiated_by", "created_at", "started_at", "completed_at",
              "lease_owner", "lease_expires_at", "version", "context")
    readonly_fields = fields
    inlines = [ProvisioningEventInline]

    def has_add_permission(self, request) -> bool:
        return False  # jobs are made by registration and retry

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # a job is history; cancel or roll it back instead

    @admin.display(description="job", ordering="id")
    def short_id(self, job: ProvisioningJob) -> str:
        return str(job.id)[:8]

    @admin.display(description="tenant", ordering="tenant__slug")
    def tenant_slug(self, job: ProvisioningJob) -> str:
        return job.tenant.slug

    @admin.display(description="phase")
    def phase(self, job: ProvisioningJob) -> str:
        """Where the job stands in its plan (the plan says, from the job's succeeded steps)."""
        return job.plan.position(job.succeeded_steps).current

    @admin.display(description="retries")
    def retries(self, job: ProvisioningJob) -> str:
        return f"{job.retry_count}/{job.max_retries}"

    def _act_on_selection(self, request, queryset, action: str) -> None:
        for job in queryset.select_related("tenant"):
            perform(request, job, action)

    @admin.action(description="Retry now (resume a job waiting for its retry; re-provision a failed tenant)",
                  permissions=["change"])
    def retry_now(self, request, queryset) -> None:
        self._act_on_selection(request, queryset, "retry-now")

    @admin.action(description="Cancel (undo what was done, end CANCELLED)", permissions=["change"])
    def cancel_jobs(self, request, queryset) -> None:
        self._act_on_selection(request, queryset, "cancel")

    @admin.action(description="Roll back (undo what was done, end FAILED)", permissions=["change"])
    def roll_back_jobs(self, request, queryset) -> None:
        self._act_on_selection(request, queryset, "roll-back")

    # --- the job page: timeline and buttons -----------------------------------------------------------------

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("<uuid:job_id>/retry-now/", wrap(self.action_view), {"action": "retry-now"},
                 name="provisioning_provisioningjob_retry_now"),
            path("<uuid:job_id>/cancel/", wrap(self.action_view), {"action": "cancel"},
                 name="provisioning_provisioningjob_cancel"),
            path("<uuid:job_id>/roll-back/", wrap(self.action_view), {"action": "roll-back"},
                 name="provisioning_provisioningjob_roll_back"),
        ] + super().get_urls()

    def action_view(self, request, job_id, action: str):
        return require_POST(self._action_view)(request, job_id, action)

    def _action_view(self, request, job_id, action: str):
        job = get_object_or_404(ProvisioningJob.objects.select_related("tenant"), id=job_id)
        if not self.has_change_permission(request, job):
            raise PermissionDenied
        perform(request, job, action)
        target = request.POST.get("next", "")
        if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                               require_https=request.is_secure()):
            target = reverse("admin:provisioning_provisioningjob_change", args=[job.id])
        return HttpResponseRedirect(target)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        job = self.get_object(request, object_id)
        extra = dict(extra_context or {})
        if job is not None:
            status, phases = dashboard.job_timeline(job)
            extra.update(
                job_status=status, timeline=phases, can_act=self.has_change_permission(request, job),
                actions_allowed={
                    "retry-now": job.status in (JobStatus.RETRY_SCHEDULED, JobStatus.FAILED, JobStatus.CANCELLED),
                    "cancel": job.status in (JobStatus.PENDING, JobStatus.RUNNING, JobStatus.RETRY_SCHEDULED),
                    "roll-back": job.status in (JobStatus.RUNNING, JobStatus.RETRY_SCHEDULED),
                },
                show_save=False, show_save_and_continue=False, show_save_and_add_another=False,
                show_delete=False,
            )
        return super().change_view(request, object_id, form_url, extra_context=extra)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ("event", "url", "status", "attempts", "last_status_code", "next_attempt_at", "delivered_at")
    list_filter = ("status", "event")
    search_fields = ("job__tenant__slug", "url")
    readonly_fields = ("job", "url", "event", "payload", "status", "attempts", "last_status_code", "last_error",
                       "next_attempt_at", "delivered_at", "created_at")

    def has_add_permission(self, request) -> bool:
        return False
