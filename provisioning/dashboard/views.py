"""The provisioning dashboard page of the admin (/admin/provisioning/dashboard/)."""
from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest
from django.template.response import TemplateResponse

from provisioning.dashboard import queries as dashboard
from provisioning.live.snapshot import dashboard_snapshots


def dashboard_view(request: HttpRequest):
    """Counts, the live rows, jobs waiting for a retry, recent failures and the step chart."""
    context = {
        **admin.site.each_context(request),
        "title": "Provisioning dashboard",
        "counts": dashboard.job_counts(),
        "rows": dashboard_snapshots(),
        "waiting": dashboard.waiting_for_retry(),
        "failed_jobs": dashboard.failed_jobs(),
        "failure_events": dashboard.failure_events(),
        "chart": dashboard.step_chart_svg(dashboard.chart_rows()),
        "can_act": request.user.has_perm("provisioning.change_provisioningjob"),
    }
    return TemplateResponse(request, "provisioning/dashboard.html", context)
