"""The provisioning dashboard page of the admin (/admin/provisioning/dashboard/).

Every section is live. The rows of "Active jobs" and "Ended in the last minutes" are
statuses pushed by the dashboard's WebSocket (provisioning.live), drawn by the page's
script. The other sections are drawn here, by their templates, and nowhere else: the
page's script fetches them again (`?sections=counts,waiting,failures`) when a pushed
status says something changed, and puts them in place.
"""
from __future__ import annotations

import json
from typing import Callable

from django.contrib import admin
from django.http import HttpRequest, HttpResponseBadRequest
from django.template.response import TemplateResponse
from django.utils import timezone

from provisioning.dashboard import queries as dashboard
from provisioning.live.snapshot import ENDED_ROWS, RECENTLY_ENDED, dashboard_snapshots

# name: (template, its data)
SECTIONS: dict[str, tuple[str, Callable[[], dict]]] = {
    "counts": ("provisioning/sections/counts.html", lambda: {"counts": dashboard.job_counts()}),
    "waiting": ("provisioning/sections/waiting.html", lambda: {"waiting": dashboard.waiting_for_retry()}),
    "failures": ("provisioning/sections/failures.html",
                 lambda: {"failed_jobs": dashboard.failed_jobs(), "failure_events": dashboard.failure_events()}),
    "chart": ("provisioning/sections/chart.html", lambda: {"chart": dashboard.step_chart_svg()}),
}


def _sections(names: list[str]) -> dict:
    context: dict = {"now": timezone.now()}
    for name in names:
        context.update(SECTIONS[name][1]())
    return context


def dashboard_view(request: HttpRequest):
    """The page; or, with ?sections=a,b, those sections alone (what the page's script fetches)."""
    can_act = request.user.has_perm("provisioning.change_provisioningjob")
    page_url = request.path  # where its buttons come back to, also from the live sections
    requested = request.GET.get("sections")
    if requested is not None:
        names = [name for name in requested.split(",") if name]
        unknown = [name for name in names if name not in SECTIONS]
        if unknown or not names:
            return HttpResponseBadRequest(f"sections: unknown {', '.join(unknown) or '(none given)'}; "
                                          f"known: {', '.join(SECTIONS)}", content_type="text/plain")
        context = {**_sections(names), "can_act": can_act, "page_url": page_url, "templates": [SECTIONS[name][0] for name in names]}
        return TemplateResponse(request, "provisioning/dashboard_sections.html", context)
    context = {
        **admin.site.each_context(request),
        **_sections(list(SECTIONS)),
        "title": "Provisioning dashboard",
        "is_nav_sidebar_enabled": False,  # a wide page: its tables need the room at 1024 px
        "live_rows": [json.loads(snapshot.dashboard_text) for snapshot in dashboard_snapshots()],
        "ended_seconds": int(RECENTLY_ENDED.total_seconds()),
        "ended_rows": ENDED_ROWS,
        "can_act": can_act,
        "page_url": page_url,
    }
    return TemplateResponse(request, "provisioning/dashboard.html", context)
