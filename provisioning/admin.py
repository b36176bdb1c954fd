"""The Django admin as the provisioning dashboard.

Jobs: a list filtered by status, kind and tier; a job page with its phase timeline and
its events, live (it reloads its parts when the tenant's status changes: the live view
below, and static/provisioning/job_page.js); "retry now", "cancel" and "roll back" as
buttons on the job page (provisioning.dashboard.actions: cancel and roll back ask first)
and as list actions, calling provisioning.services like the API does.
The dashboard page (/admin/provisioning/dashboard/) is provisioning.dashboard.views,
routed in matih/urls.py and linked from the admin index.
"""
from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest
from django.urls import path, reverse

from provisioning import services
from provisioning.dashboard import queries as dashboard
from provisioning.dashboard.actions import ObjectAction, ObjectActionsMixin, actor_of
from provisioning.models import JobStatus, ProvisioningJob, WebhookDelivery
from provisioning.selectors import events_of, latest_job
from provisioning.templatetags.matih_dashboard import moment_field, operation as operation_html

admin.site.index_template = "provisioning/admin_index.html"

EVENTS_SHOWN = 500
S = JobStatus


def _retry_now(request: HttpRequest, job: ProvisioningJob, data: dict) -> str:
    """A job waiting for its retry resumes now; the tenant's FAILED or CANCELLED last job starts anew."""
    if job.status == S.RETRY_SCHEDULED:
        services.job_resume_now(job=job, actor=actor_of(request))
        return f"Job of {job.tenant.slug} resumed from its failed step."
    newest = latest_job(job.tenant_id)
    if newest is not None and newest.id != job.id:
        raise services.ActionRefused(f"{job.tenant.slug} has a newer job ({newest.status}); act on that one.")
    new_job = services.retry(tenant=job.tenant, initiated_by=request.user)
    return f"{job.tenant.slug} is provisioning again (job {new_job.id})."


def _cancel(request: HttpRequest, job: ProvisioningJob, data: dict) -> str:
    services.cancel(job=job, actor=actor_of(request))
    return f"Job of {job.tenant.slug} is cancelling: what it did is being undone."


def _roll_back(request: HttpRequest, job: ProvisioningJob, data: dict) -> str:
    services.roll_back(job=job, actor=actor_of(request))
    return f"Job of {job.tenant.slug} is rolling back."


JOB_ACTIONS = (
    ObjectAction("retry-now", "Retry now", _retry_now,
                 applies=lambda job: job.status in (S.RETRY_SCHEDULED, S.FAILED, S.CANCELLED)),
    ObjectAction("cancel", "Cancel", _cancel,
                 applies=lambda job: job.status in (S.PENDING, S.RUNNING, S.RETRY_SCHEDULED),
                 confirm="The running step finishes, nothing new starts, and what the job did is undone, "
                         "latest step first. The job ends CANCELLED."),
    ObjectAction("roll-back", "Roll back", _roll_back,
                 applies=lambda job: job.status in (S.RUNNING, S.RETRY_SCHEDULED),
                 confirm="What the job did is undone, latest step first. The job ends FAILED."),
)


@admin.register(ProvisioningJob)
class ProvisioningJobAdmin(ObjectActionsMixin, admin.ModelAdmin):
    list_display = ("short_id", "tenant_slug", "operation", "tier", "status", "phase", "retries", "next_retry_at",
                    "created_at")
    list_filter = ("status", "kind", "tier")
    search_fields = ("tenant__slug", "tenant__name", "=id")
    list_select_related = ("tenant",)
    ordering = ("-created_at",)
    date_hierarchy = "created_at"
    actions = ["retry_now", "cancel_jobs", "roll_back_jobs"]
    object_actions = JOB_ACTIONS
    fieldsets = (
        (None, {"fields": ("tenant", "operation", "status", "phase", "retries", "next_retry", "error_message",
                           "initiated_by")}),
        ("Times (UTC)", {"fields": ("created", "started", "completed", "updated")}),
        ("Engine", {"fields": ("succeeded_steps", "lease_owner", "lease_expires", "version", "context")}),
    )
    readonly_fields = ("tenant", "operation", "status", "phase", "retries", "next_retry", "error_message",
                       "initiated_by", "created", "started", "completed", "updated", "succeeded_steps",
                       "lease_owner", "lease_expires", "version", "context")

    def has_add_permission(self, request) -> bool:
        return False  # jobs are made by registration and the operations

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # a job is history; cancel or roll it back instead

    def describe(self, job: ProvisioningJob) -> str:
        return job.tenant.slug

    # --- columns and fields ---------------------------------------------------------------------------------

    @admin.display(description="job", ordering="id")
    def short_id(self, job: ProvisioningJob) -> str:
        return str(job.id)[:8]

    @admin.display(description="tenant", ordering="tenant__slug")
    def tenant_slug(self, job: ProvisioningJob) -> str:
        return job.tenant.slug

    @admin.display(description="operation", ordering="kind")
    def operation(self, job: ProvisioningJob) -> str:
        return operation_html(job)

    @admin.display(description="phase")
    def phase(self, job: ProvisioningJob) -> str:
        """Where the job stands in its plan (the plan says, from the job's succeeded steps)."""
        return job.plan.position(job.succeeded_steps).current

    @admin.display(description="retries")
    def retries(self, job: ProvisioningJob) -> str:
        return f"{job.retry_count}/{job.max_retries}"

    next_retry = moment_field("next_retry_at", "next retry at")
    created = moment_field("created_at", "created")
    started = moment_field("started_at", "started")
    completed = moment_field("completed_at", "ended")
    updated = moment_field("updated_at", "last change")
    lease_expires = moment_field("lease_expires_at", "lease expires")

    # --- list actions ---------------------------------------------------------------------------------------

    def _act_on_selection(self, request, queryset, action: str) -> None:
        for job in queryset.select_related("tenant"):
            self.perform(request, job, action)

    @admin.action(description="Retry now (resume, or provision a failed tenant again)", permissions=["change"])
    def retry_now(self, request, queryset) -> None:
        self._act_on_selection(request, queryset, "retry-now")

    @admin.action(description="Cancel (undo, end CANCELLED)", permissions=["change"])
    def cancel_jobs(self, request, queryset) -> None:
        self._act_on_selection(request, queryset, "cancel")

    @admin.action(description="Roll back (undo, end FAILED)", permissions=["change"])
    def roll_back_jobs(self, request, queryset) -> None:
        self._act_on_selection(request, queryset, "roll-back")

    # --- the job page: timeline, events and buttons, live ---------------------------------------------------

    def get_urls(self):
        live = path("<path:object_id>/live/", self.admin_site.admin_view(self.live_view),
                    name="provisioning_provisioningjob_live")
        return [live] + super().get_urls()

    def live_view(self, request: HttpRequest, object_id: str):
        """The job page's live parts alone (the page fetches them when the tenant's status changes)."""
        return self.change_view(request, object_id, extra_context={"live_fragment": True})

    def change_view(self, request, object_id, form_url="", extra_context=None):
        job = self.get_object(request, object_id)
        extra = dict(extra_context or {})
        if job is not None:
            status, phases = dashboard.job_timeline(job)
            extra.update(
                title=f"{job.kind} job of {job.tenant.slug}",
                job_status=status, timeline=phases, buttons=self.buttons(request, job),
                events=events_of(job, after=max(job.version - EVENTS_SHOWN, 0), limit=EVENTS_SHOWN),
                ws_path=f"/ws/tenants/{job.tenant_id}/provisioning/",
                page_url=reverse("admin:provisioning_provisioningjob_change", args=[job.id]),
                subtitle=f"job {job.id}",
                show_save=False, show_save_and_continue=False, show_save_and_add_another=False,
                show_delete=False,
            )
        return super().change_view(request, object_id, form_url, extra_context=extra)

    def render_change_form(self, request, context, *args, **kwargs):
        response = super().render_change_form(request, context, *args, **kwargs)
        if context.get("live_fragment"):
            response.template_name = "admin/provisioning/provisioningjob/live.html"
        return response


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ("event", "url", "status", "attempts", "last_status_code", "next_attempt_at", "delivered_at")
    list_filter = ("status", "event")
    search_fields = ("job__tenant__slug", "url")
    readonly_fields = ("job", "url", "event", "payload", "status", "attempts", "last_status_code", "last_error",
                       "next_attempt_at", "delivered_at", "created_at")

    def has_add_permission(self, request) -> bool:
        return False
