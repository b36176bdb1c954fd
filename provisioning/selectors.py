"""Reads of provisioning: the status (one function for the API, the WebSocket,
the admin and the CLI), jobs with their steps, events, and step statistics."""
from __future__ import annotations

import time
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone

from provisioning.models import TERMINAL_JOB_STATUSES, JobStatus, ProvisioningEvent, ProvisioningJob, StepRun
from provisioning.engine.plans import Plan, Step, plan_for
from tenants.models import Tenant

MIN_SAMPLES_FOR_MEDIAN = 5
STATS_WINDOW = timedelta(days=30)
STATS_CACHE_SECONDS = 30.0

_stats_cache: tuple[float, dict] | None = None


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


def latest_job(tenant_id) -> ProvisioningJob | None:
    return ProvisioningJob.objects.filter(tenant_id=tenant_id).order_by("-created_at").first()


def step_statistics(*, refresh: bool = False) -> dict[str, dict]:
    """Per step name over the last 30 days: runs, median and p95 duration (ms), failure rate.

    Cached per process for a few seconds: the ETA of every status read uses it.
    """
    global _stats_cache
    if not refresh and _stats_cache and time.monotonic() - _stats_cache[0] < STATS_CACHE_SECONDS:
        return _stats_cache[1]
    table = StepRun._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT name,
                   count(*) FILTER (WHERE succeeded_at IS NOT NULL),
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms) FILTER (WHERE succeeded_at IS NOT NULL),
                   percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms) FILTER (WHERE succeeded_at IS NOT NULL),
                   count(*) FILTER (WHERE error <> ''),
                   sum(attempts)
            FROM {table}
            WHERE finished_at >= %s AND duration_ms IS NOT NULL
            GROUP BY name
            """,
            [timezone.now() - STATS_WINDOW],
        )
        stats = {
            name: {"runs": runs, "medianMs": median, "p95Ms": p95, "failures": failures,
                   "failureRate": (failures / attempts) if attempts else 0.0}
            for name, runs, median, p95, failures, attempts in cursor.fetchall()
        }
    _stats_cache = (time.monotonic(), stats)
    return stats


def estimated_seconds(step: Step, stats: dict[str, dict], time_scale: float) -> float:
    """The median of past runs once there are enough; the seed's nominal duration before."""
    known = stats.get(step.name)
    if known and known["runs"] >= MIN_SAMPLES_FOR_MEDIAN and known["medianMs"] is not None:
        return known["medianMs"] / 1000
    return step.nominal_seconds * time_scale


def _critical_path(steps: tuple[Step, ...], remaining: dict[str, float]) -> float:
    """Longest chain of remaining seconds through a phase's dependency graph."""
    finish: dict[str, float] = {}
    for step in steps:  # plans list a step after the steps it waits for
        start = max((finish.get(name, 0.0) for name in step.after), default=0.0)
        finish[step.name] = start + remaining.get(step.name, 0.0)
    return max(finish.values(), default=0.0)


def _time_scale(job: ProvisioningJob) -> float:
    if settings.MATIH_INFRA_BACKEND != "simulated":
        return 1.0
    return float((job.context.get("simulate") or {}).get("timeScale", settings.MATIH_SIM_TIME_SCALE))


def _estimate_completion(job: ProvisioningJob, plan: Plan, steps: dict[str, StepRun], now: datetime) -> datetime | None:
    if job.status in TERMINAL_JOB_STATUSES or job.status in (JobStatus.ROLLING_BACK, JobStatus.CANCELLING):
        return None
    stats = step_statistics()
    scale = _time_scale(job)
    remaining: dict[str, float] = {}
    for step in plan.steps:
        run = steps.get(step.name)
        if run is not None and run.succeeded_at is not None:
            continue
        estimate = estimated_seconds(step, stats, scale)
        if run is not None and run.status == "RUNNING" and run.started_at:
            estimate = max(estimate - (now - run.started_at).total_seconds(), 0.0)
        remaining[step.name] = estimate
    seconds = sum(_critical_path(plan.steps_of(phase), remaining) for phase in plan.phases)
    start = now
    if job.status == JobStatus.RETRY_SCHEDULED and job.next_retry_at and job.next_retry_at > now:
        start = job.next_retry_at
    return start + timedelta(seconds=seconds)


def step_rows(steps: list[StepRun]) -> list[dict]:
    return [
        {"name": s.name, "phase": s.phase, "status": s.status, "attempts": s.attempts,
         "startedAt": _iso(s.started_at), "finishedAt": _iso(s.finished_at), "durationMs": s.duration_ms,
         "error": s.error or None}
        for s in steps
    ]


def provisioning_status(tenant: Tenant, job: ProvisioningJob | None = None) -> dict:
    """The status of the tenant's latest job, in the contract's shape."""
    job = job or latest_job(tenant.id)
    base = {"tenantId": str(tenant.id), "tier": tenant.tier, "status": tenant.status}
    if job is None:
        return {**base, "jobId": None, "jobStatus": None, "currentPhase": None, "completedPhases": [],
                "remainingPhases": [], "progress": 100 if tenant.status == "ACTIVE" else 0, "startedAt": None,
                "estimatedCompletion": None, "completedAt": None, "retryCount": 0, "maxRetries": 0,
                "nextRetryAt": None, "errorMessage": tenant.error_message or None, "steps": []}
    plan = plan_for(job.tier)
    step_list = list(job.steps.all())
    steps = {s.name: s for s in step_list}
    if job.status == JobStatus.COMPLETED:
        current, completed, remaining = "COMPLETED", list(plan.phases), []
    else:
        completed = []
        for phase in plan.phases:
            phase_steps = plan.steps_of(phase)
            if all(steps.get(s.name) is not None and steps[s.name].succeeded_at for s in phase_steps):
                completed.append(phase)
            else:
                break
        index = len(completed)
        current = plan.phases[index] if index < len(plan.phases) else "COMPLETED"
        remaining = list(plan.phases[index + 1:])
    now = timezone.now()
    eta = _estimate_completion(job, plan, steps, now)
    return {
        **base,
        "jobId": str(job.id),
        "jobStatus": job.status,
        "currentPhase": current,
        "completedPhases": completed,
        "remainingPhases": remaining,
        "progress": 100 if job.status == JobStatus.COMPLETED else plan.progress(
            {s.name for s in step_list if s.succeeded_at is not None}),
        "startedAt": _iso(job.started_at),
        "estimatedCompletion": _iso(eta),
        "completedAt": _iso(job.completed_at),
        "retryCount": job.retry_count,
        "maxRetries": job.max_retries,
        "nextRetryAt": _iso(job.next_retry_at),
        "errorMessage": job.error_message or None,
        "version": job.version,
        "steps": step_rows(sorted(step_list, key=lambda s: s.position)),
    }


def jobs_of(tenant: Tenant) -> list[dict]:
    jobs = ProvisioningJob.objects.filter(tenant=tenant).order_by("-created_at").prefetch_related("steps")
    return [
        {"id": str(job.id), "tier": job.tier, "status": job.status, "currentState": job.current_state,
         "initiatedBy": str(job.initiated_by_id) if job.initiated_by_id else None,
         "createdAt": _iso(job.created_at), "startedAt": _iso(job.started_at),
         "completedAt": _iso(job.completed_at), "errorMessage": job.error_message or None,
         "retryCount": job.retry_count, "maxRetries": job.max_retries, "nextRetryAt": _iso(job.next_retry_at),
         "progress": 100 if job.status == JobStatus.COMPLETED else plan_for(job.tier).progress(
             {s.name for s in job.steps.all() if s.succeeded_at is not None}),
         "steps": step_rows(sorted(job.steps.all(), key=lambda s: s.position))}
        for job in jobs
    ]


def events_of(job: ProvisioningJob, *, after: int = 0, limit: int = 500) -> list[dict]:
    events = ProvisioningEvent.objects.filter(job=job, seq__gt=after).order_by("seq")[:limit]
    return [{"seq": e.seq, "kind": e.kind, "step": e.step or None, "message": e.message, "data": e.data,
             "at": _iso(e.created_at)} for e in events]
