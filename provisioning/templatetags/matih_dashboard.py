"""Small pieces of the dashboard and the job page that templates alone would repeat.

Times: every time on these pages shows seconds and milliseconds, in UTC (`clock`:
06:34:12.345, `moment`: 2026-01-02 06:34:12.345), as a <time> element whose title holds
the full date. The dashboard's rows are drawn in the browser from pushed statuses;
provisioning/static/provisioning/live.js formats their times the same way.
"""
from __future__ import annotations

from datetime import datetime, timezone

from django import template
from django.middleware.csrf import get_token
from django.urls import reverse
from django.utils.html import escape, format_html
from django.utils.http import urlencode
from django.utils.safestring import SafeString, mark_safe

register = template.Library()


def _utc(value: datetime | str | None) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value.astimezone(timezone.utc) if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _time(value: datetime | str | None, *, with_date: bool) -> SafeString | str:
    moment = _utc(value)
    if moment is None:
        return "-"
    clock_text = f"{moment:%H:%M:%S}.{moment.microsecond // 1000:03d}"
    full = f"{moment:%Y-%m-%d} {clock_text}"
    return format_html('<time datetime="{}" title="{} UTC">{}</time>', moment.isoformat().replace("+00:00", "Z"),
                       full, full if with_date else clock_text)


@register.filter
def clock(value: datetime | str | None) -> SafeString | str:
    """The time of day with milliseconds (06:34:12.345), the full date in its title; '-' for none."""
    return _time(value, with_date=False)


@register.filter
def moment(value: datetime | str | None) -> SafeString | str:
    """The date and the time with milliseconds (2026-01-02 06:34:12.345); '-' for none."""
    return _time(value, with_date=True)


def moment_field(field: str, description: str):
    """A read-only admin field (or column) showing a model's datetime `field` with milliseconds."""
    from django.contrib import admin

    @admin.display(description=description, ordering=field)
    def show(model_admin, obj) -> str:
        return moment(getattr(obj, field))

    return show


@register.filter
def duration(milliseconds) -> str:
    """12 ms, 1.5 s, 42 s; '-' for none."""
    from provisioning.dashboard.queries import duration_text

    return duration_text(milliseconds)


@register.filter
def breakable(value) -> SafeString:
    """A DOMAIN_NAME that may wrap after its underscores (long phase and step names in narrow columns)."""
    return mark_safe(escape(value or "").replace("_", "_<wbr>"))


@register.filter
def operation(job) -> SafeString:
    """A job's kind in words, with the tiers of a tier change: 'CHANGE_TIER FREE → PROFESSIONAL'."""
    kind = getattr(job, "kind", None) or (job.get("kind") if isinstance(job, dict) else None)
    if kind is None:
        return mark_safe("-")
    if isinstance(job, dict):
        before, after = job.get("fromTier"), job.get("toTier")
    else:
        before, after = job.from_tier, job.to_tier
    if kind == "CHANGE_TIER":
        return format_html('<span class="kind">{}</span> <span class="tiers">{} &rarr; {}</span>',
                           breakable(kind), before or "?", after or "?")
    return format_html('<span class="kind">{}</span>', breakable(kind))


@register.simple_tag(takes_context=True)
def action_button(context, button) -> SafeString:
    """One object action as a button (provisioning.dashboard.actions.Button).

    An action that asks first is a link to its confirmation page; the others post at once.
    Both come back to the page (`page_url`: the page, also when this is drawn for its live parts).
    """
    request = context["request"]
    back = context.get("page_url") or request.get_full_path()
    title = format_html(' title="{}"', button.why_not) if button.why_not else ""
    if not button.enabled:
        return format_html('<span class="button action-{} disabled" aria-disabled="true"{}>{}</span>',
                           button.name, title, button.label)
    if button.asks_first:
        return format_html('<a class="button action-{}" href="{}?{}">{}&hellip;</a>',
                           button.name, button.url, urlencode({"next": back}), button.label)
    return format_html(
        '<form method="post" action="{}" class="inline-action action-{}">'
        '<input type="hidden" name="csrfmiddlewaretoken" value="{}">'
        '<input type="hidden" name="next" value="{}">'
        '<button type="submit" class="button">{}</button></form>',
        button.url, button.name, get_token(request), back, button.label,
    )


@register.simple_tag(takes_context=True)
def retry_form(context, job_id) -> SafeString:
    """The dashboard's "Retry now" for a job waiting for its retry (it posts at once, back to the dashboard)."""
    from provisioning.dashboard.actions import Button

    url = reverse("admin:provisioning_provisioningjob_retry_now", args=[job_id])
    return action_button(context, Button(name="retry-now", label="Retry now", url=url))
