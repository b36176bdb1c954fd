"""Reads of provisioning: the status (one function for the API, the WebSocket, the SSE
stream, the admin and the CLI), jobs with their steps, events, and step statistics.

Where a job stands in its plan comes from the plan (`Plan.position` over the job's
succeeded steps), the same answer the runner and the sweeper act on.
"""
from __future__ import annotations

import time
from datetime import datetime, timedelta

from django.db import connection
from django.db.models import Count, Sum
from django.utils import timezone

from provisioning.engine.plans import Plan, Step, plan_of_job
from provisioning.engine.states import simulated_time_scale
from provisioning.models import TERMINAL_JOB_STATUSES, JobStatus, ProvisioningEvent, ProvisioningJob, StepRun
from tenants.models import Tenant

MIN_SAMPLES_FOR_MEDIAN = 5
STATS_WINDOW = timedelta(days=30)
STATS_CACHE_SECONDS = 30.0
# A running step is credited at most this share of its weight before it succeeds.
RUNNING_CREDIT_CAP = 0.9
# The events that record a failed attempt of the step they name.
STEP_FAILURE_EVENTS = ("job.retry_scheduled", "job.rolling_back", "step.failed")

_stats_cache: tuple[float, dict] | None = None


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


def latest_job(tenant_id) -> ProvisioningJob | None:
    return ProvisioningJob.objects.filter(tenant_id=tenant_id).order_by("-created_at").first()


def step_statistics(*, refresh: bool = False) -> dict[str, dict]:
    """Per step name over the last 30 days: runs, median and p95 duration (ms) of its successes.

    Cached per process for a few seconds: the ETA of every status read uses it.
    """
    global _stats_cache
    if not refresh and _stats_cache and time.monotonic() - _stats_cache[0] < STATS_CACHE_SECONDS:
        return _stats_cache[1]
    table = StepRun._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT name, count(*),
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms),
                   percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms)
            FROM {table}
            WHERE finished_at >= %s AND duration_ms IS NOT NULL AND succeeded_at IS NOT NULL
            GROUP BY name
            """,
            [timezone.now() - STATS_WINDOW],
        )
        stats = {name: {"runs": runs, "medianMs": median, "p95Ms": p95}
                 for name, runs, median, p95 in cursor.fetchall()}
    _stats_cache = (time.monotonic(), stats)
    return stats


def step_failure_rates() -> dict[str, tuple[int, int]]:
    """Per step over the last 30 days: (failed attempts, attempts).

    A step that failed and then succeeded on a retry keeps no error on its row, so failed
    attempts are counted from the events that record them.
    """
    since = timezone.now() - STATS_WINDOW
    failed = dict(ProvisioningEvent.objects.filter(created_at__gte=since, kind__in=STEP_FAILURE_EVENTS)
                  .exclude(step="").values("step").annotate(n=Count("id")).values_list("step", "n").order_by())
    attempts = dict(StepRun.objects.filter(started_at__gte=since).values("name")
                    .annotate(n=Sum("attempts")).values_list("name", "n").order_by())
    return {name: (failed.get(name, 0), max(attempts.get(name) or 0, failed.get(name, 0)))
            for name in set(failed) | set(attempts)}


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


def _scale(job: ProvisioningJob) -> float:
    scale = simulated_time_scale(job.context)
    return 1.0 if scale is None else scale


def _estimate_completion(job: ProvisioningJob, plan: Plan, steps: dict[str, StepRun], now: datetime) -> datetime | None:
    if job.status in TERMINAL_JOB_STATUSES or job.status in (JobStatus.ROLLING_BACK, JobStatus.CANCELLING):
        return None
    stats = step_statistics()
    scale = _scale(job)
    remaining: dict[str, float] = {}
    succeeded = set(job.succeeded_steps)
    for step in plan.steps:
        if step.name in succeeded:
            continue
        run = steps.get(step.name)
        estimate = estimated_seconds(step, stats, scale)
        if run is not None and run.status == "RUNNING" and run.started_at:
            estimate = max(estimate - (now - run.started_at).total_seconds(), 0.0)
        remaining[step.name] = estimate
    seconds = sum(_critical_path(plan.steps_of(phase), remaining) for phase in plan.phases)
    start = now
    if job.status == JobStatus.RETRY_SCHEDULED and job.next_retry_at and job.next_retry_at > now:
        start = job.next_retry_at
    return start + timedelta(seconds=seconds)


def progress_of(job: ProvisioningJob, plan: Plan, steps: dict[str, StepRun], now: datetime) -> int:
    """Percent of the plan's nominal duration done; 100 only when COMPLETED; never decreases.

    A succeeded step counts in full (and stays counted through a rollback). A step that has
    run without succeeding yet (running now, or failed and waiting for its retry) counts
    the time it has run over every attempt against its expected duration (nominal times the
    job's time scale), up to RUNNING_CREDIT_CAP of its weight: an hour-long Terraform apply
    moves the bar as it runs. Time run only grows, so neither does the figure go back.
    """
    if job.status == JobStatus.COMPLETED:
        return 100
    scale = _scale(job)
    succeeded = set(job.succeeded_steps)
    done = 0.0
    for step in plan.steps:
        if step.name in succeeded:
            done += step.nominal_seconds
            continue
        run = steps.get(step.name)
        if run is None or not run.attempts:
            continue
        ran_ms = run.elapsed_ms
        if run.status == "RUNNING" and run.started_at:
            ran_ms += max((now - run.started_at).total_seconds() * 1000, 0)
        expected = step.nominal_seconds * scale
        fraction = RUNNING_CREDIT_CAP if expected <= 0 else min(RUNNING_CREDIT_CAP, ran_ms / 1000 / expected)
        done += step.nominal_seconds * fraction
    return plan.progress(done)


def step_rows(steps: list[StepRun]) -> list[dict]:
    return [
        {"name": s.name, "phase": s.phase, "status": s.status, "attempts": s.attempts,
         "startedAt": _iso(s.started_at), "finishedAt": _iso(s.finished_at), "durationMs": s.duration_ms,
         "error": s.error or None}
        for s in steps
    ]


def _job_fields(job: ProvisioningJob) -> dict:
    return {"kind": job.kind, "fromTier": job.from_tier, "toTier": job.to_tier}


def provisioning_status(tenant: Tenant, job: ProvisioningJob | None = None) -> dict:
    """The status of the tenant's latest job (of any kind), in the contract's shape."""
    job = job or latest_job(tenant.id)
    if job is not None and job.status in TERMINAL_JOB_STATUSES:
        # The tenant as of after the job's read: a job's end and the tenant's new status commit
        # together, so a job read as ended comes with the tenant it left (never FAILED beside
        # PROVISIONING, as the caller's earlier read of the tenant could show). A job that has
        # not ended changes the tenant's status in the transaction that made it: no re-read.
        tenant.refresh_from_db(fields=["tier", "status", "error_message"])
    base = {"tenantId": str(tenant.id), "tier": tenant.tier, "status": tenant.status}
    if job is None:
        return {**base, "jobId": None, "kind": None, "fromTier": None, "toTier": None, "jobStatus": None,
                "currentPhase": None, "completedPhases": [], "remainingPhases": [],
                "progress": 100 if tenant.status == "ACTIVE" else 0, "startedAt": None,
                "estimatedCompletion": None, "completedAt": None, "retryCount": 0, "maxRetries": 0,
                "nextRetryAt": None, "errorMessage": tenant.error_message or None, "steps": []}
    plan = plan_of_job(job)
    step_list = sorted(job.steps.all(), key=lambda s: s.position)
    steps = {s.name: s for s in step_list}
    position = plan.position(job.succeeded_steps)
    now = timezone.now()
    return {
        **base,
        "jobId": str(job.id),
        **_job_fields(job),
        "jobStatus": job.status,
        "currentPhase": position.current,
        "completedPhases": list(position.completed),
        "remainingPhases": list(position.remaining),
        "progress": progress_of(job, plan, steps, now),
        "startedAt": _iso(job.started_at),
        "estimatedCompletion": _iso(_estimate_completion(job, plan, steps, now)),
        "completedAt": _iso(job.completed_at),
        "retryCount": job.retry_count,
        "maxRetries": job.max_retries,
        "nextRetryAt": _iso(job.next_retry_at),
        "errorMessage": job.error_message or None,
        "version": job.version,
        "steps": step_rows(step_list),
    }


def jobs_of(tenant: Tenant) -> list[dict]:
    jobs = ProvisioningJob.objects.filter(tenant=tenant).order_by("-created_at").prefetch_related("steps")
    now = timezone.now()
    rows = []
    for job in jobs:
        plan = plan_of_job(job)
        step_list = sorted(job.steps.all(), key=lambda s: s.position)
        rows.append({
            "id": str(job.id), **_job_fields(job), "tier": job.tier, "status": job.status,
            "currentPhase": plan.position(job.succeeded_steps).current,
            "initiatedBy": str(job.initiated_by_id) if job.initiated_by_id else None,
            "createdAt": _iso(job.created_at), "startedAt": _iso(job.started_at),
            "completedAt": _iso(job.completed_at), "errorMessage": job.error_message or None,
            "retryCount": job.retry_count, "maxRetries": job.max_retries, "nextRetryAt": _iso(job.next_retry_at),
            "progress": progress_of(job, plan, {s.name: s for s in step_list}, now),
            "steps": step_rows(step_list),
        })
    return rows


def events_of(job: ProvisioningJob, *, after: int = 0, limit: int = 500) -> list[dict]:
    events = ProvisioningEvent.objects.filter(job=job, seq__gt=after).order_by("seq")[:limit]
    return [{"seq": e.seq, "kind": e.kind, "step": e.step or None, "message": e.message, "data": e.data,
             "at": _iso(e.created_at)} for e in events]


def resources_of(tenant: Tenant) -> list[dict]:
    """What the tenant has now, by the inventory (what its steps made and nothing has removed since)."""
    from provisioning.models import TenantResource

    rows = TenantResource.objects.filter(tenant=tenant, removed_at__isnull=True).order_by("created_at", "id")
    return [{"kind": r.kind, "name": r.name, "location": r.location, "step": r.step, "jobId": str(r.job_id),
             "createdAt": _iso(r.created_at)} for r in rows]
