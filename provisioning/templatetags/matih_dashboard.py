"""Small pieces of the dashboard and job page that templates alone would repeat."""
from __future__ import annotations

from django import template
from django.middleware.csrf import get_token
from django.urls import reverse
from django.utils.html import format_html

register = template.Library()


def _clock(iso: str | None) -> str:
    """'2026-01-02T03:04:05.678Z' -> '03:04:05 UTC' (the dashboard's rows are about today)."""
    return f"{iso[11:19]} UTC" if iso else ""


@register.simple_tag
def when_of(status: dict) -> str:
    """The next retry of a job waiting for one, else its ETA, else when it ended."""
    if status.get("jobStatus") == "RETRY_SCHEDULED" and status.get("nextRetryAt"):
        return format_html('<span class="next-retry" title="{}">retry at {}</span>',
                           status["nextRetryAt"], _clock(status["nextRetryAt"]))
    if status.get("estimatedCompletion"):
        return format_html('<span class="eta" title="{}">ETA {}</span>',
                           status["estimatedCompletion"], _clock(status["estimatedCompletion"]))
    if status.get("completedAt"):
        return format_html('<span class="done" title="{}">done {}</span>',
                           status["completedAt"], _clock(status["completedAt"]))
    return ""


@register.simple_tag(takes_context=True)
def retry_form(context, job_id) -> str:
    """A "Retry now" button for a job waiting for its retry; back to this page afterwards."""
    return job_action_form(context, job_id, "retry-now", "Retry now")


@register.simple_tag(takes_context=True)
def job_action_form(context, job_id, action: str, label: str, allowed: dict | None = None) -> str:
    request = context["request"]
    url = reverse(f"admin:provisioning_provisioningjob_{action.replace('-', '_')}", args=[job_id])
    disabled = allowed is not None and not allowed.get(action, False)
    return format_html(
        '<form method="post" action="{}" class="inline-action action-{}">'
        '<input type="hidden" name="csrfmiddlewaretoken" value="{}">'
        '<input type="hidden" name="next" value="{}">'
        '<button type="submit" class="button"{}>{}</button></form>',
        url, action, get_token(request), request.get_full_path(), " disabled" if disabled else "", label,
    )
