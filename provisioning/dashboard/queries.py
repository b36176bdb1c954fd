"""Reads for the admin's provisioning dashboard and job page, and the step chart.

Statuses come from `provisioning_status` (through provisioning.live); this
module only counts, lists and draws.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, F
from django.utils import timezone
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from billing.models import Tier
from provisioning.models import JobKind, JobStatus, ProvisioningEvent, ProvisioningJob
from provisioning.engine.plans import PLANS, plan_of_job
from provisioning.selectors import provisioning_status, step_failure_rates, step_statistics

FAILURE_EVENTS = ("job.retry_scheduled", "job.rolling_back", "job.failed", "step.compensation_failed")


@dataclass(frozen=True)
class CountRow:
    status: str
    by_tier: list[tuple[str, int]]  # (tier, jobs), every tier
    by_kind: list[tuple[str, int]]  # (kind, jobs), every kind
    total: int


@dataclass(frozen=True)
class Counts:
    rows: list[CountRow]  # every status
    tier_totals: list[tuple[str, int]]
    kind_totals: list[tuple[str, int]]
    total: int

    @property
    def by_status(self) -> dict[str, int]:
        return {row.status: row.total for row in self.rows}


def job_counts() -> Counts:
    """Jobs by status, by tier and by kind (every status, tier and kind listed, zeros included)."""
    found = list(ProvisioningJob.objects.values("status", "tier", "kind").annotate(n=Count("id")).order_by())

    def count(status: str | None = None, **where) -> int:
        return sum(row["n"] for row in found if (status is None or row["status"] == status)
                   and all(row[field] == value for field, value in where.items()))

    rows = [CountRow(status=status,
                     by_tier=[(tier, count(status, tier=tier)) for tier in Tier.values],
                     by_kind=[(kind, count(status, kind=kind)) for kind in JobKind.values],
                     total=count(status))
            for status in JobStatus.values]
    return Counts(rows=rows, tier_totals=[(tier, count(tier=tier)) for tier in Tier.values],
                  kind_totals=[(kind, count(kind=kind)) for kind in JobKind.values], total=count())


def waiting_for_retry(limit: int = 50) -> list[ProvisioningJob]:
    return list(ProvisioningJob.objects.select_related("tenant")
                .filter(status=JobStatus.RETRY_SCHEDULED).order_by("next_retry_at")[:limit])


def failed_jobs(limit: int = 15) -> list[ProvisioningJob]:
    """The jobs that ended FAILED or CANCELLED, the latest first."""
    return list(ProvisioningJob.objects.select_related("tenant")
                .filter(status__in=[JobStatus.FAILED, JobStatus.CANCELLED])
                .order_by(F("completed_at").desc(nulls_last=True))[:limit])


def failure_events(limit: int = 15) -> list[ProvisioningEvent]:
    """The latest step failures and the decisions they led to (retry, roll back, failed)."""
    return list(ProvisioningEvent.objects.select_related("job__tenant")
                .filter(kind__in=FAILURE_EVENTS).order_by("-created_at")[:limit])


# --- a job's phase timeline ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TimelineStep:
    name: str
    status: str
    attempts: int
    started_at: datetime | None
    duration_ms: int | None
    error: str | None
    offset_pct: float  # where its bar starts, in percent of the job's span
    width_pct: float


@dataclass(frozen=True)
class TimelinePhase:
    name: str
    state: str  # done, current, waiting
    steps: list[TimelineStep]


def _parse(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def job_timeline(job: ProvisioningJob) -> tuple[dict, list[TimelinePhase]]:
    """The job's status and its phases in plan order, each step placed on the job's time span.

    A running step's bar reaches the present, so the chart grows while the job runs.
    """
    status = provisioning_status(job.tenant, job)
    now = timezone.now()
    steps = {step["name"]: step for step in status["steps"]}

    def duration_s(step: dict) -> float:
        if step["durationMs"] is not None:
            return step["durationMs"] / 1000
        if step["status"] == "RUNNING" and step["startedAt"]:
            return max((now - _parse(step["startedAt"])).total_seconds(), 0.0)
        return 0.0

    starts = [_parse(s["startedAt"]) for s in status["steps"] if s["startedAt"]]
    origin = min(starts) if starts else None
    end = max((_parse(s["startedAt"]) + timedelta(seconds=duration_s(s)) for s in status["steps"]
               if s["startedAt"]), default=None)
    span = max((end - origin).total_seconds(), 0.001) if origin and end else 1.0
    plan = plan_of_job(job)
    phases = []
    for phase in plan.phases:
        rows = []
        for planned in plan.steps_of(phase):
            step = steps.get(planned.name) or {"name": planned.name, "status": "PENDING", "attempts": 0,
                                               "startedAt": None, "durationMs": None, "error": None}
            started = _parse(step["startedAt"])
            offset = ((started - origin).total_seconds() / span * 100) if started and origin else 0.0
            width = duration_s(step) / span * 100 if started else 0.0
            rows.append(TimelineStep(name=step["name"], status=step["status"], attempts=step["attempts"],
                                     started_at=started, duration_ms=step["durationMs"], error=step["error"],
                                     offset_pct=round(min(offset, 100.0), 2),
                                     width_pct=round(max(min(width, 100.0 - offset), 0.5), 2)))
        if phase in status["completedPhases"]:
            state = "done"
        elif phase == status["currentPhase"]:
            state = "current"
        else:
            state = "waiting"
        phases.append(TimelinePhase(name=phase, state=state, steps=rows))
    return status, phases


# --- the step chart -----------------------------------------------------------------------------------------


def chart_rows() -> dict[str, dict]:
    """step_statistics' durations, with failure rates over every attempt."""
    stats = {name: dict(row) for name, row in step_statistics(refresh=True).items()}
    for name, (failures, attempts) in step_failure_rates().items():
        row = stats.setdefault(name, {"runs": 0, "medianMs": None, "p95Ms": None})
        row["failures"], row["attempts"] = failures, attempts
        row["failureRate"] = failures / attempts if attempts else 0.0
    return stats


def _step_order() -> list[str]:
    names: list[str] = []
    for key in ("PROVISION:ENTERPRISE", "PROVISION:PROFESSIONAL", "PROVISION:FREE", *sorted(PLANS)):
        for step in PLANS[key].steps:
            if step.name not in names:
                names.append(step.name)
    return names


def duration_text(value: float | None) -> str:
    """Milliseconds in words: 12 ms, 1.5 s, 42 s."""
    if value is None:
        return "-"
    if value >= 10_000:
        return f"{value / 1000:.0f} s"
    if value >= 1000:
        return f"{value / 1000:.1f} s"
    return f"{value:.0f} ms"


def step_chart_svg(stats: dict[str, dict] | None = None) -> SafeString:
    """Median and p95 duration and failure rate per step, as an inline SVG (no script, no library).

    Durations share one linear scale (the largest p95); failure rates have their own (0-100 %).
    """
    stats = chart_rows() if stats is None else stats
    names = [name for name in _step_order() if name in stats] + sorted(set(stats) - set(_step_order()))
    if not names:
        return mark_safe('<p class="chart-empty">No finished steps in the last 30 days yet.</p>')
    label_w, bar_w, gap, rate_w, row_h = 220, 440, 120, 160, 26
    width = label_w + bar_w + gap + rate_w + 20
    height = 40 + row_h * len(names) + 10
    longest = max((stats[n]["p95Ms"] or 0) for n in names) or 1.0
    rate_x = label_w + bar_w + gap
    parts = [
        f'<svg class="step-chart" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="Step durations and failure rates">',
        '<title>Median and p95 duration and failure rate of each step (last 30 days)</title>',
        f'<rect class="legend-p95" x="{label_w}" y="8" width="12" height="12"/>'
        f'<text x="{label_w + 18}" y="18">p95</text>',
        f'<rect class="legend-median" x="{label_w + 60}" y="8" width="12" height="12"/>'
        f'<text x="{label_w + 78}" y="18">median</text>',
        f'<text x="{rate_x}" y="18">failure rate</text>',
    ]
    for index, name in enumerate(names):
        row = stats[name]
        y = 34 + index * row_h
        p95 = row["p95Ms"] or 0
        median = row["medianMs"] or 0
        rate = row.get("failureRate") or 0.0
        p95_w = max(p95 / longest * bar_w, 1 if p95 else 0)
        median_w = max(median / longest * bar_w, 1 if median else 0)
        parts.append(
            f'<g class="row" data-step="{escape(name)}">'
            f'<text class="label" x="{label_w - 8}" y="{y + 15}" text-anchor="end">{escape(name)}</text>'
            f'<rect class="p95" x="{label_w}" y="{y + 3}" width="{p95_w:.1f}" height="16">'
            f'<title>{escape(name)}: p95 {duration_text(row["p95Ms"])}</title></rect>'
            f'<rect class="median" x="{label_w}" y="{y + 7}" width="{median_w:.1f}" height="8">'
            f'<title>{escape(name)}: median {duration_text(row["medianMs"])}</title></rect>'
            f'<text class="value" x="{label_w + p95_w + 6:.1f}" y="{y + 15}">'
            f'{duration_text(row["medianMs"])} / {duration_text(row["p95Ms"])}</text>'
            f'<rect class="rate-track" x="{rate_x}" y="{y + 5}" width="{rate_w - 50}" height="12"/>'
            f'<rect class="rate" x="{rate_x}" y="{y + 5}" width="{rate * (rate_w - 50):.1f}" height="12">'
            f'<title>{escape(name)}: {row.get("failures", 0)} of {row.get("attempts", row["runs"])} attempt(s) failed'
            f'</title></rect>'
            f'<text class="value" x="{rate_x + rate_w - 44}" y="{y + 15}">{rate * 100:.0f} %</text>'
            '</g>'
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))
