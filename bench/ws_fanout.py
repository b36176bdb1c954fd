"""WebSocket fan-out benchmark: push delay and memory per connection, served the production way.

    python bench/ws_fanout.py [--clients 500] [--tenants 10] [--tier FREE] [--time-scale 0.004]
                              [--web-workers 2] [--worker-concurrency 4]

1. Creates a scratch database (`matih_bench_ws` on the PostgreSQL of DATABASE_URL, or on the
   embedded one), migrates it, makes an operator key (`manage.py operator_key`), and uses a
   Redis logical database of its own (REDIS_URL's host, db 5 unless --redis-db).
2. Starts the ASGI server as `manage.py up` does: gunicorn with uvicorn_worker.UvicornWorker
   on matih.asgi, Django's psycopg pool (MATIH_DB_POOL=true).
3. Registers the tenants over HTTP (simulated cloud, a small time scale) while no Celery worker
   runs: their jobs wait, PENDING.
4. Connects N WebSocket clients (the `websockets` package, one asyncio loop), spread over the
   tenants, each with its tenant admin's key, and waits for every snapshot. The server's RSS
   (the sum over its worker processes) before and after, idle, divided by N, is the memory
   per idle connection.
5. Starts a Celery worker: the tenants provision. Each client stamps each message on arrival
   (time.time()) and keeps the raw text; nothing is parsed until the run ends.
6. The delay of a transition at a client = the arrival of the first message showing that
   version or a later one (consumers coalesce hints) - the transition's event `created_at`
   in the database (stamped by the worker inside the committing transaction, so the delay
   includes the rest of that transaction: it errs high). Same machine, same clock.
7. Prints p50/p90/p99/max over every (client, transition) pair, the messages sent and
   coalesced, then stops everything, drops the database and deletes the run's Redis keys.

Traffic goes only to 127.0.0.1; every wait is bounded.
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    HOST, ROOT, ScratchDatabase, ScratchRedis, base_database_url, base_redis_url, cpu_seconds, machine_busy_seconds, manage, percentile, rss_bytes,
)
from matih.processes import Child, children_of, free_port  # noqa: E402

TERMINAL = ("COMPLETED", "FAILED", "CANCELLED")


def _child(name: str, command: list[str], env: dict, log_dir: Path) -> Child:
    return Child(name, command, env=env, cwd=ROOT, log_path=log_dir / f"{name}.log")


# --- clients --------------------------------------------------------------------------------------------


@dataclass
class Client:
    tenant_id: str
    url: str
    received: list[tuple[float, str]] = field(default_factory=list)  # (arrival, raw text)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    socket: object = None
    error: str | None = None


async def connect(client: Client, snapshot_timeout: float) -> None:
    import websockets

    try:
        client.socket = await websockets.connect(client.url, open_timeout=30, max_queue=None, compression=None)
        raw = await asyncio.wait_for(client.socket.recv(), snapshot_timeout)
        client.received.append((time.time(), raw))
    except Exception as exc:  # noqa: BLE001  (reported, not raised: one client must not end the run)
        client.error = f"{type(exc).__name__}: {exc}"


async def listen(client: Client) -> None:
    """Stamp each message as it arrives; stop after a terminal status (a cheap substring test)."""
    try:
        async for raw in client.socket:
            client.received.append((time.time(), raw))
            if any(f'"jobStatus":"{status}"' in raw for status in TERMINAL):
                break
    except Exception as exc:  # noqa: BLE001
        client.error = f"{type(exc).__name__}: {exc}"
    finally:
        client.done.set()


async def connect_all(clients: list[Client], parallel: int) -> float:
    started = time.perf_counter()
    gate = asyncio.Semaphore(parallel)

    async def one(client: Client) -> None:
        async with gate:
            await connect(client, snapshot_timeout=60)

    await asyncio.gather(*(one(client) for client in clients))
    return time.perf_counter() - started


# --- the run --------------------------------------------------------------------------------------------


def register_tenants(base: str, operator_key: str, count: int, tier: str, scale: float, run: str) -> list[dict]:
    import httpx

    tenants = []
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {operator_key}"}, timeout=30) as http:
        for index in range(count):
            slug = f"ws-{run}-{index}"
            response = http.post("/api/v1/tenants", json={
                "name": f"Fan-out {index}", "slug": slug, "tier": tier, "region": "eastus",
                "adminEmail": f"admin@{slug}.example.com", "simulate": {"timeScale": scale}})
            if response.status_code != 201:
                raise SystemExit(f"registration failed: {response.status_code} {response.text}")
            tenants.append(response.json())
    return tenants


def analyse(clients: list[Client], database: ScratchDatabase) -> dict:
    job_of_tenant = dict(database.query("SELECT tenant_id::text, id::text FROM provisioning_provisioningjob"))
    commits: dict[str, dict[int, float]] = {}
    for job_id, seq, created in database.query(
            "SELECT job_id::text, seq, extract(epoch FROM created_at) FROM provisioning_provisioningevent"):
        commits.setdefault(job_id, {})[seq] = float(created)
    delays, messages, expected_pairs, missing = [], 0, 0, 0
    for client in clients:
        if not client.received:
            continue
        job_id = job_of_tenant[client.tenant_id]
        arrivals = []  # (arrival, version) after the snapshot
        snapshot = json.loads(client.received[0][1])["data"]
        for arrival, raw in client.received[1:]:
            arrivals.append((arrival, json.loads(raw)["data"]["version"]))
        messages += len(arrivals)
        for version, created in sorted(commits.get(job_id, {}).items()):
            if version <= (snapshot.get("version") or 0):
                continue  # it happened before this client's snapshot
            expected_pairs += 1
            arrival = next((at for at, seen in arrivals if seen >= version), None)
            if arrival is None:
                missing += 1
            else:
                delays.append((arrival - created) * 1000)
    transitions = sum(len(v) for v in commits.values())
    return {"delays": delays, "messages": messages, "pairs": expected_pairs, "missing": missing,
            "transitions": transitions}


async def run_clients(args, tenants: list[dict], base_ws: str, web: Child, start_worker) -> dict:
    clients = [Client(tenant_id=tenants[i % len(tenants)]["id"],
                      url=f"{base_ws}/ws/tenants/{tenants[i % len(tenants)]['id']}/provisioning/"
                          f"?token={tenants[i % len(tenants)]['adminApiKey']}")
               for i in range(args.clients)]
    workers = children_of(web.process.pid)

    # Warm up each server process (imports, pools, first-use allocations), then measure idle RSS.
    warm = [Client(tenant_id=c.tenant_id, url=c.url) for c in clients[: 10 * args.web_workers]]
    await connect_all(warm, parallel=20)
    for client in warm:
        await client.socket.close()
    await asyncio.sleep(2)
    rss_before = rss_bytes(workers)
    connect_seconds = await connect_all(clients, parallel=args.parallel_connects)
    failed = [c for c in clients if c.error or not c.received]
    await asyncio.sleep(3)  # idle
    gc.collect()
    rss_after = rss_bytes(workers)
    connected = len(clients) - len(failed)

    listeners = [asyncio.create_task(listen(c)) for c in clients if c.socket is not None and not c.error]
    cpu_before = {"server": cpu_seconds(workers), "bench client": cpu_seconds([os.getpid()]),
                  "machine": machine_busy_seconds()}
    started = time.monotonic()
    worker = start_worker()
    try:
        await asyncio.wait_for(asyncio.gather(*(c.done.wait() for c in clients if c.socket is not None)),
                               timeout=args.run_timeout)
    except TimeoutError:
        print(f"! not every client saw a terminal status within {args.run_timeout:.0f} s", file=sys.stderr)
    provisioning_seconds = time.monotonic() - started
    worker_pids = [worker.process.pid, *children_of(worker.process.pid)]
    cpu = {"server": cpu_seconds(workers) - cpu_before["server"],
           "celery worker": cpu_seconds(worker_pids),
           "bench client": cpu_seconds([os.getpid()]) - cpu_before["bench client"],
           "machine": machine_busy_seconds() - cpu_before["machine"]}
    for task in listeners:
        task.cancel()
    await asyncio.gather(*(c.socket.close() for c in clients if c.socket is not None), return_exceptions=True)
    return {"clients": clients, "connected": connected, "failed": failed, "rss_before": rss_before,
            "rss_after": rss_after, "connect_seconds": connect_seconds, "worker": worker,
            "provisioning_seconds": provisioning_seconds, "server_processes": len(workers), "cpu": cpu}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--tenants", type=int, default=10)
    parser.add_argument("--tier", default="FREE", choices=["FREE", "PROFESSIONAL", "ENTERPRISE"])
    parser.add_argument("--time-scale", type=float, default=0.004, help="simulated cloud: seed durations x this")
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn workers (manage.py up's default)")
    parser.add_argument("--worker-concurrency", type=int, default=4)
    parser.add_argument("--parallel-connects", type=int, default=50)
    parser.add_argument("--run-timeout", type=float, default=180)
    parser.add_argument("--database-name", default="matih_bench_ws", help="scratch database, dropped at the end")
    parser.add_argument("--redis-db", type=int, default=5, help="a Redis logical database no one else uses")
    args = parser.parse_args(argv)
    if args.tier == "ENTERPRISE":
        raise SystemExit("ENTERPRISE needs a service principal; use FREE or PROFESSIONAL")

    before = machine_busy_seconds()
    time.sleep(2)
    others = (machine_busy_seconds() - before) / 2
    database = ScratchDatabase(base_database_url(), args.database_name)
    scratch_redis = ScratchRedis(base_redis_url(), args.redis_db)
    scratch_redis.start()
    database.create()
    log_dir = Path(tempfile.mkdtemp(prefix="matih-bench-ws-"))
    env = {**os.environ, "DATABASE_URL": database.url, "REDIS_URL": scratch_redis.url, "PYTHONUNBUFFERED": "1",
           "MATIH_CHANNEL_PREFIX": f"benchws{os.getpid()}", "MATIH_INFRA_BACKEND": "simulated",
           "MATIH_SIM_FAULT_RATE": "0", "MATIH_LOG_LEVEL": "WARNING"}
    children: list[Child] = []
    try:
        manage(env, "migrate", "--noinput")
        operator_key = manage(env, "operator_key", "bench-ws@matih.local").strip().splitlines()[-1]
        port = free_port()
        web = _child("web", [sys.executable, "-m", "gunicorn", "matih.asgi:application", "-k",
                            "uvicorn_worker.UvicornWorker", "-w", str(args.web_workers), "-b", f"{HOST}:{port}",
                            "--graceful-timeout", "5", "--access-logfile", "/dev/null", "--backlog", "2048"],
                    {**env, "MATIH_DB_POOL": "true"}, log_dir)
        children.append(web)
        web.wait_for_http(f"http://{HOST}:{port}/healthz")
        run = f"{int(time.time()) % 100000}"
        tenants = register_tenants(f"http://{HOST}:{port}", operator_key, args.tenants, args.tier,
                                   args.time_scale, run)

        def start_worker() -> Child:
            worker = _child("worker", [sys.executable, "-m", "celery", "-A", "matih", "worker", "-P", "prefork",
                                      "-c", str(args.worker_concurrency), "-l", "info", "--without-gossip",
                                      "--without-mingle", "-n", f"bench-ws-{os.getpid()}@%h"], env, log_dir)
            children.append(worker)
            return worker

        result = asyncio.run(run_clients(args, tenants, f"ws://{HOST}:{port}", web, start_worker))
        figures = analyse(result["clients"], database)
        report(args, result, figures, database, others)
        return 0
    finally:
        for child in reversed(children):
            child.stop()
        database.drop()
        removed = scratch_redis.cleanup()
        print(f"cleanup: dropped {database.name}, deleted {removed} Redis key(s); logs in {log_dir}")


def report(args, result: dict, figures: dict, database: ScratchDatabase, others: float) -> None:
    delays = figures["delays"]
    n = result["connected"]
    per_connection = (result["rss_after"] - result["rss_before"]) / max(n, 1)
    statuses = database.query("SELECT status, count(*) FROM provisioning_provisioningjob GROUP BY status")
    errors = [c.error for c in result["clients"] if c.error]
    print()
    print(f"WebSocket fan-out: {n}/{args.clients} clients on {args.tenants} {args.tier} tenants "
          f"({n // max(args.tenants, 1)} per tenant), gunicorn + UvicornWorker x{result['server_processes']}, "
          f"celery prefork x{args.worker_concurrency}, time scale {args.time_scale}")
    print(f"  before the run, other processes kept {others:.2f} of {os.cpu_count()} cores busy"
          + (" (a busy machine: delays are not this code's alone)" if others > 0.25 else ""))
    print(f"  connect: {n} clients in {result['connect_seconds']:.2f} s (snapshot received by each)")
    print(f"  jobs: {dict(statuses)}; provisioning took {result['provisioning_seconds']:.1f} s; "
          f"{figures['transitions']} transitions committed")
    print(f"  messages after the snapshots: {figures['messages']} for {figures['pairs']} (client, transition) "
          f"pairs ({figures['pairs'] - figures['messages']} coalesced into a later message), "
          f"{figures['missing']} never shown")
    if delays:
        print(f"  push delay, commit -> client (ms): p50 {percentile(delays, 50):.1f}  "
              f"p90 {percentile(delays, 90):.1f}  p99 {percentile(delays, 99):.1f}  max {max(delays):.1f}  "
              f"mean {statistics.fmean(delays):.1f}")
    print(f"  server RSS: {result['rss_before'] / 2**20:.1f} MiB before, {result['rss_after'] / 2**20:.1f} MiB "
          f"with {n} idle connections: {per_connection / 1024:.1f} KiB per connection")
    cpu, seconds = result["cpu"], result["provisioning_seconds"]
    cores = os.cpu_count() or 1
    print(f"  CPU while provisioning ({seconds:.1f} s x {cores} cores = {seconds * cores:.1f} core-s): "
          + ", ".join(f"{name} {value:.1f} s" for name, value in cpu.items())
          + " (machine = every process here, PostgreSQL, Redis and anyone else's included)")
    p99 = percentile(delays, 99) if delays else float("inf")
    print(f"  targets: p99 <= 100 ms: {'met' if p99 <= 100 else 'NOT met'}; "
          f"<= 100 KiB per idle connection: {'met' if per_connection <= 100 * 1024 else 'NOT met'}")
    if errors:
        print(f"  client errors ({len(errors)}): {sorted(set(errors))[:5]}")


if __name__ == "__main__":
    sys.exit(main())
