"""Control-plane benchmark: tenant registration over HTTP, served the production way.

    python bench/control_plane.py [--server wsgi|asgi|both] [--duration 15] [--connections 16]
                                  [--rate 100] [--workers 4]

For each server it:
1. creates a scratch database (`matih_bench` on the PostgreSQL of DATABASE_URL, or on
   the embedded one when unset), migrates it and makes an operator key with
   `manage.py operator_key`;
2. starts gunicorn on 127.0.0.1 with N workers: sync workers on `matih.wsgi`
   (persistent connections, CONN_MAX_AGE), or `uvicorn_worker.UvicornWorker` on
   `matih.asgi` with Django's psycopg pool (MATIH_DB_POOL=true);
3. drives load from this process over HTTP/1.1 keep-alive (asyncio, raw streams: a
   light client, since it shares the machine's cores with the server and PostgreSQL):
   a. closed loop at saturation: C connections, each sends its next request as soon
      as the answer arrives, for a fixed duration;
   b. open loop: requests sent at a fixed offered rate whatever the answers do, each
      latency measured from its *scheduled* send time, so a stall is charged to every
      request it delays (no coordinated omission);
   each for `GET /healthz` (the baseline: the server and the client alone) and for
   `POST /api/v1/tenants` with a unique slug per request;
4. prints p50/p95/p99/max latency, throughput, non-2xx and transport errors, the ratio
   against the baseline, and where the CPU went (client, server, PostgreSQL), then
   stops the server and drops the scratch database.

Traffic goes only to 127.0.0.1; every loop is bounded in time and count.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import itertools
import json
import os
import random
import socket
import string
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    HOST, ROOT, ScratchDatabase, ScratchRedis, base_database_url, base_redis_url, manage,
)
from matih.processes import Child, free_port  # noqa: E402
REQUEST_TIMEOUT = 30.0  # seconds; an answer later than this is a transport error
DRAIN_TIMEOUT = 30.0  # seconds the open loop waits for its last answers
MAX_REQUESTS_PER_PHASE = 2_000_000  # a hard bound on every loop, whatever the options
REGIONS = ("eastus", "westeurope", "westus2", "northeurope")
TIERS = ("FREE", "PROFESSIONAL")
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- Results -----------------------------------------------------------------------------


@dataclass
class PhaseResult:
    name: str
    endpoint: str
    mode: str  # "closed" or "open"
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    statuses: collections.Counter = field(default_factory=collections.Counter)
    transport_errors: collections.Counter = field(default_factory=collections.Counter)
    offered_rate: float | None = None
    connections_opened: int = 0
    cpu: dict[str, float] = field(default_factory=dict)  # share of one core, by owner

    @property
    def ok(self) -> int:
        return sum(n for code, n in self.statuses.items() if 200 <= code < 300)

    @property
    def non_2xx(self) -> int:
        return sum(n for code, n in self.statuses.items() if not 200 <= code < 300)

    @property
    def throughput(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        rank = max(0, min(len(ordered) - 1, int(round(p / 100 * len(ordered) + 0.5)) - 1))
        return ordered[rank]

    def as_dict(self) -> dict:
        return {
            "name": self.name, "endpoint": self.endpoint, "mode": self.mode, "seconds": round(self.seconds, 3),
            "offeredRate": self.offered_rate, "requests": len(self.latencies_ms) + sum(self.transport_errors.values()),
            "ok": self.ok, "non2xx": self.non_2xx, "statuses": dict(self.statuses),
            "transportErrors": dict(self.transport_errors), "throughput": round(self.throughput, 1),
            "p50": round(self.percentile(50), 2), "p95": round(self.percentile(95), 2),
            "p99": round(self.percentile(99), 2), "max": round(max(self.latencies_ms, default=float("nan")), 2),
            "connectionsOpened": self.connections_opened, "cpu": {k: round(v, 2) for k, v in self.cpu.items()},
        }


# --- Where the CPU goes --------------------------------------------------------------------


def _proc_times() -> dict[int, tuple[str, int, float]]:
    """pid -> (comm, process group, utime+stime in seconds) for every process we can read."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                raw = f.read().decode(errors="replace")
        except OSError:
            continue
        comm = raw[raw.index("(") + 1: raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2:].split()
        # fields[0] is state (field 3); pgrp is field 5, utime 14, stime 15.
        out[int(entry)] = (comm, int(fields[2]), (int(fields[11]) + int(fields[12])) / CLK_TCK)
    return out


def _machine_busy() -> tuple[float, float]:
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]
    total = sum(values[:8])
    return (total - idle) / CLK_TCK, total / CLK_TCK


class CpuMeter:
    """CPU seconds spent by the client (this process), the server's process group,
    PostgreSQL and everything else, over a phase; reported as a share of one core."""

    def __init__(self, server_pgid: int | None):
        self.server_pgid = server_pgid

    def _sample(self):
        return _proc_times(), _machine_busy(), time.perf_counter()

    def start(self) -> None:
        self.before = self._sample()

    def stop(self) -> dict[str, float]:
        procs_after, (busy_after, total_after), t_after = self._sample()
        procs_before, (busy_before, total_before), t_before = self.before
        wall = t_after - t_before
        owners: collections.Counter = collections.Counter()
        me = os.getpid()
        for pid, (comm, pgid, cpu) in procs_after.items():
            before = procs_before.get(pid)
            delta = cpu - (before[2] if before and before[0] == comm else 0.0)
            if pid == me:
                owners["client"] += delta
            elif self.server_pgid is not None and pgid == self.server_pgid:
                owners["server"] += delta
            elif comm.startswith("postgres") or comm.startswith("postmaster"):
                owners["postgres"] += delta
            elif comm.startswith("redis"):
                owners["redis"] += delta
            else:
                owners["other"] += delta
        shares = {owner: 100.0 * seconds / wall for owner, seconds in owners.items()}
        ncpu = os.cpu_count() or 1
        shares["machineBusy"] = 100.0 * ncpu * (busy_after - busy_before) / max(total_after - total_before, 1e-9)
        # Everything else, from the machine's total: per-process deltas miss the kernel's
        # share (loopback networking) and overcount processes born during the phase.
        shares["rest"] = max(0.0, shares["machineBusy"] - sum(shares.get(k, 0.0) for k in ("client", "server", "postgres")))
        return shares


# --- A small HTTP/1.1 client on asyncio streams ---------------------------------------------


class HttpError(Exception):
    pass


class Connection:
    """One keep-alive connection to 127.0.0.1, reopened when the server closes it
    (gunicorn's sync workers answer every request with `Connection: close`)."""

    opened = 0

    def __init__(self, port: int):
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def _open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(HOST, self.port)
        self.writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        Connection.opened += 1

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def request(self, payload: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            await self._open()
        self.writer.write(payload)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
            raise HttpError(f"bad status line {lines[0]!r}")
        status = int(parts[1])
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip().lower()
        if "content-length" in headers:
            body = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding") == "chunked":
            body = await self._read_chunked()
        else:
            body = await self.reader.read()
            headers["connection"] = "close"
        if headers.get("connection") == "close" or parts[0] == "HTTP/1.0":
            self.close()
        return status, body

    async def _read_chunked(self) -> bytes:
        chunks = []
        for _ in range(1_000_000):
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self.reader.readuntil(b"\r\n")
                break
            chunks.append(await self.reader.readexactly(size))
            await self.reader.readexactly(2)
        return b"".join(chunks)


class Workload:
    """The bytes of the next request: GET /healthz, or a registration with a fresh slug."""

    def __init__(self, port: int, operator_key: str, run_id: str):
        self.host_header = f"Host: {HOST}:{port}\r\n"
        self.auth_header = f"Authorization: Bearer {operator_key}\r\n"
        self.run_id = run_id
        self.counter = itertools.count(1)
        self.healthz_bytes = f"GET /healthz HTTP/1.1\r\n{self.host_header}\r\n".encode()

    def healthz(self) -> bytes:
        return self.healthz_bytes

    def registration(self) -> bytes:
        n = next(self.counter)
        slug = f"b{self.run_id}-{n}"
        body = json.dumps({
            "name": f"Bench Tenant {n}",
            "slug": slug,
            "tier": TIERS[n % len(TIERS)],
            "region": REGIONS[n % len(REGIONS)],
            "adminEmail": f"admin@{slug}.bench.test",
        }).encode()
        return (
            f"POST /api/v1/tenants HTTP/1.1\r\n{self.host_header}{self.auth_header}"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body

    def payload_for(self, endpoint: str):
        return self.healthz if endpoint == "healthz" else self.registration


async def _timed_request(conn: Connection, payload: bytes, result: PhaseResult, started: float) -> None:
    """Send one request and file its outcome; latency counts from `started`."""
    try:
        async with asyncio.timeout(REQUEST_TIMEOUT):
            status, _ = await conn.request(payload)
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, HttpError, TimeoutError) as exc:
        conn.close()
        result.transport_errors[type(exc).__name__] += 1
        return
    result.latencies_ms.append((time.perf_counter() - started) * 1000)
    result.statuses[status] += 1


async def closed_loop(port: int, make_payload, connections: int, seconds: float, result: PhaseResult) -> None:
    """C connections, each sending its next request as soon as the last one is answered."""
    deadline = time.perf_counter() + seconds
    budget = itertools.count()

    async def one_connection() -> None:
        conn = Connection(port)
        try:
            while time.perf_counter() < deadline and next(budget) < MAX_REQUESTS_PER_PHASE:
                await _timed_request(conn, make_payload(), result, time.perf_counter())
        finally:
            conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(one_connection() for _ in range(connections)))
    result.seconds = time.perf_counter() - started


async def open_loop(port: int, make_payload, rate: float, seconds: float, max_connections: int,
                    result: PhaseResult) -> None:
    """Requests at a fixed offered rate, latency from each request's scheduled send time.

    1. Request i is due at t0 + i/rate; the scheduler sleeps until then and hands it to
       a task, whether or not earlier answers have arrived.
    2. A task takes an idle connection (the most recently used first), or waits for one
       when `max_connections` are busy; the wait counts in its latency.
    3. After the last send, the answers still due get DRAIN_TIMEOUT seconds; any later
       is a transport error.
    """
    total = min(int(rate * seconds), MAX_REQUESTS_PER_PHASE)
    pool: asyncio.LifoQueue[Connection] = asyncio.LifoQueue()
    for _ in range(max_connections):
        pool.put_nowait(Connection(port))

    async def send(payload: bytes, scheduled: float) -> None:
        conn = await pool.get()
        try:
            await _timed_request(conn, payload, result, scheduled)
        finally:
            pool.put_nowait(conn)

    tasks = set()
    t0 = time.perf_counter() + 0.05
    for i in range(total):
        scheduled = t0 + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(send(make_payload(), scheduled))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        done, pending = await asyncio.wait(set(tasks), timeout=DRAIN_TIMEOUT)
        for task in pending:
            task.cancel()
        if pending:
            result.transport_errors["drain_timeout"] += len(pending)
    result.seconds = total / rate
    while not pool.empty():
        pool.get_nowait().close()


async def run_phase(name: str, endpoint: str, mode: str, workload: Workload, port: int, args,
                    server_pgid: int | None) -> PhaseResult:
    result = PhaseResult(name=name, endpoint=endpoint, mode=mode, seconds=args.duration)
    make_payload = workload.payload_for(endpoint)
    meter = CpuMeter(server_pgid)
    opened_before = Connection.opened
    meter.start()
    if mode == "closed":
        await closed_loop(port, make_payload, args.connections, args.duration, result)
    else:
        result.offered_rate = args.rate
        await open_loop(port, make_payload, args.rate, args.duration, args.open_max_connections, result)
    result.cpu = meter.stop()
    result.connections_opened = Connection.opened - opened_before
    return result


# --- The scratch database, the server --------------------------------------------------------


def server_command(kind: str, port: int, args) -> list[str]:
    gunicorn = [sys.executable, "-m", "gunicorn", "--bind", f"{HOST}:{port}", "--workers", str(args.workers),
                "--backlog", "2048", "--keep-alive", "75", "--graceful-timeout", "5", "--timeout", "60"]
    if kind == "wsgi":
        return gunicorn + ["--worker-class", "sync", "matih.wsgi:application"]
    return gunicorn + ["--worker-class", "uvicorn_worker.UvicornWorker", "matih.asgi:application"]


class Server(Child):
    """gunicorn with the chosen worker class, in a session of its own (the master and its workers)."""

    def __init__(self, kind: str, env: dict, args, log_path: Path):
        self.kind = kind
        self.port = free_port(HOST)
        super().__init__(f"{kind} server", server_command(kind, self.port, args), env=env, cwd=ROOT,
                         log_path=log_path)
        self.pgid = self.pid  # start_new_session: the master leads its own group

    def wait_ready(self, seconds: float = 60.0) -> None:
        self.wait_for_http(f"http://{HOST}:{self.port}/healthz", timeout=seconds)


# --- Report ---------------------------------------------------------------------------------


def _row(result: PhaseResult) -> str:
    cpu = result.cpu
    errors = result.non_2xx + sum(result.transport_errors.values())
    return (
        f"  {result.name:<34} {len(result.latencies_ms):>7} {result.throughput:>8.1f} "
        f"{result.percentile(50):>7.1f} {result.percentile(95):>7.1f} {result.percentile(99):>7.1f} "
        f"{max(result.latencies_ms, default=float('nan')):>7.1f} {errors:>6}   "
        f"{cpu.get('client', 0):>4.0f} {cpu.get('server', 0):>4.0f} {cpu.get('postgres', 0):>4.0f} "
        f"{cpu.get('rest', 0):>4.0f} {cpu.get('machineBusy', 0):>4.0f}"
    )


HEADER = (
    f"  {'phase':<34} {'answers':>7} {'ok/s':>8} {'p50':>7} {'p95':>7} {'p99':>7} {'max':>7} {'errors':>6}"
    f"   {'cli%':>4} {'srv%':>4} {'pg%':>4} {'oth%':>4} {'all%':>4}"
)


def print_report(kind: str, command: list[str], results: dict[str, PhaseResult], args) -> None:
    print(f"\n== {kind}: {' '.join(command[2:])}")
    print("  latency in ms; cli/srv/pg = CPU of the client, the server's processes, PostgreSQL in % of one"
          f" core; oth = the rest of the machine's busy time (kernel, Redis, other work); all = machine busy, % of {os.cpu_count()} cores")
    print(HEADER)
    for result in results.values():
        print(_row(result))
        details = []
        if result.non_2xx:
            details.append("non-2xx " + ", ".join(f"{code}: {n}" for code, n in sorted(result.statuses.items())
                                                  if not 200 <= code < 300))
        if result.transport_errors:
            details.append("transport " + ", ".join(f"{k}: {n}" for k, n in result.transport_errors.items()))
        other = result.cpu.get("rest", 0)
        if other > 25:
            details.append(f"contended: other work took {other:.0f}% of a core, figures are pessimistic")
        if details:
            print("      " + "; ".join(details))
    for mode in ("closed", "open"):
        base, reg = results.get(f"{mode}-healthz"), results.get(f"{mode}-register")
        if base and reg and base.latencies_ms and reg.latencies_ms:
            print(
                f"  {mode} loop, registration vs /healthz: throughput x{reg.throughput / base.throughput:.2f}, "
                f"p50 x{reg.percentile(50) / base.percentile(50):.1f}, p99 x{reg.percentile(99) / base.percentile(99):.1f}"
            )
    sat, lat = results.get("closed-register"), results.get("open-register")
    if sat and lat:
        print(
            f"  targets: saturation {sat.throughput:.0f}/s (>= 250: {'met' if sat.throughput >= 250 else 'MISSED'}); "
            f"p99 at {args.rate:g}/s offered {lat.percentile(99):.1f} ms "
            f"(<= 50: {'met' if lat.percentile(99) <= 50 and not lat.non_2xx else 'MISSED'})"
        )


async def wait_for_quiet_machine(limit: float, busy_threshold: float = 25.0) -> None:
    """Wait (at most `limit` seconds) until the machine is near idle between phases, so that
    other work on a shared machine does not get into the figures; say so if it never is."""
    deadline = time.monotonic() + limit
    while True:
        busy_before, total_before = _machine_busy()
        await asyncio.sleep(1.0)
        busy_after, total_after = _machine_busy()
        busy = 100.0 * (os.cpu_count() or 1) * (busy_after - busy_before) / max(total_after - total_before, 1e-9)
        if busy < busy_threshold:
            return
        if time.monotonic() > deadline:
            print(f"   note: the machine is {busy:.0f}% busy (of one core) before the phase; other work is "
                  "running, see the oth% column", file=sys.stderr)
            return


async def drive(kind: str, server: Server, operator_key: str, args) -> dict[str, PhaseResult]:
    workload = Workload(server.port, operator_key, args.run_id)
    # Warm-up, unmeasured: every worker imports, connects to PostgreSQL and Redis, fills caches.
    if args.warmup > 0:
        warm = argparse.Namespace(**{**vars(args), "duration": args.warmup})
        await run_phase("warm-up", "register", "closed", workload, server.port, warm, server.pgid)
        await run_phase("warm-up", "healthz", "closed", workload, server.port, warm, server.pgid)
    results: dict[str, PhaseResult] = {}
    plan = [
        ("closed-healthz", f"closed {args.connections} conns GET /healthz", "healthz", "closed"),
        ("closed-register", f"closed {args.connections} conns POST /tenants", "register", "closed"),
        ("open-healthz", f"open {args.rate:g}/s GET /healthz", "healthz", "open"),
        ("open-register", f"open {args.rate:g}/s POST /tenants", "register", "open"),
    ]
    for key, label, endpoint, mode in plan:
        if key not in args.phases:
            continue
        await asyncio.sleep(args.pause)  # let the last phase's stragglers settle
        await wait_for_quiet_machine(args.quiet_wait)
        results[key] = await run_phase(label, endpoint, mode, workload, server.port, args, server.pgid)
        print(f"   {kind}: {_row(results[key]).strip()}", file=sys.stderr, flush=True)
    return results


def bench_server(kind: str, database: ScratchDatabase, redis_url: str, args, log_dir: Path) -> tuple[dict, list]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "matih.settings",
        "DATABASE_URL": database.url,
        "REDIS_URL": redis_url,
        "MATIH_DB_POOL": "true" if kind == "asgi" else "false",
        "PYTHONUNBUFFERED": "1",
    }
    database.create()
    try:
        manage(env, "migrate", "--noinput")
        operator_key = manage(env, "operator_key", "bench-operator@matih.test").strip().splitlines()[-1]
        server = Server(kind, env, args, log_dir / f"{kind}.log")
        try:
            server.wait_ready()
            results = asyncio.run(drive(kind, server, operator_key, args))
        finally:
            server.stop()
        created = sum(r.statuses.get(201, 0) for r in results.values())
        tenants, jobs = database.count("tenants_tenant"), database.count("provisioning_provisioningjob")
        print(f"   {kind}: database holds {tenants} tenants and {jobs} jobs "
              f"(measured phases answered 201 {created} times; the warm-up made the rest)", file=sys.stderr)
        return results, server.command
    finally:
        if not args.keep_database:
            database.drop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", choices=["wsgi", "asgi", "both"], default="both")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per measured phase")
    parser.add_argument("--connections", type=int, default=16, help="closed-loop connections")
    parser.add_argument("--rate", type=float, default=100.0, help="open-loop offered requests per second")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds before the phases")
    parser.add_argument("--pause", type=float, default=1.0, help="seconds between phases")
    parser.add_argument("--open-max-connections", type=int, default=64,
                        help="connections the open loop may hold at once")
    parser.add_argument("--phases", default="closed-healthz,closed-register,open-healthz,open-register",
                        help="comma-separated subset of the four phases to run")
    parser.add_argument("--quiet-wait", type=float, default=60.0,
                        help="seconds to wait before each phase for other work on the machine to stop")
    parser.add_argument("--database-name", default="matih_bench", help="scratch database, dropped at the end")
    parser.add_argument("--keep-database", action="store_true")
    parser.add_argument("--redis-db", type=int, default=14,
                        help="Redis logical database for the Celery messages of the run")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if not (0 < args.duration <= 600 and 0 < args.rate <= 10_000 and 0 < args.connections <= 1024
            and 0 < args.workers <= 64):
        parser.error("duration 0-600 s, rate 0-10000/s, connections 1-1024, workers 1-64")
    args.phases = {phase.strip() for phase in args.phases.split(",") if phase.strip()}
    args.run_id = "".join(random.choices(string.ascii_lowercase + string.digits, k=6))

    database = ScratchDatabase(base_database_url(), args.database_name)
    scratch_redis = ScratchRedis(base_redis_url(), args.redis_db)
    scratch_redis.start()
    kinds = ["wsgi", "asgi"] if args.server == "both" else [args.server]
    report = {"machine": {"cpus": os.cpu_count()}, "options": {k: v for k, v in vars(args).items() if k != "json"},
              "servers": {}}
    all_results = {}
    with tempfile.TemporaryDirectory(prefix="matih-bench-") as log_dir:
        try:
            for kind in kinds:
                print(f"-- {kind}: preparing {database.name}, starting {args.workers} workers", file=sys.stderr)
                results, command = bench_server(kind, database, scratch_redis.url, args, Path(log_dir))
                all_results[kind] = (results, command)
                report["servers"][kind] = {"command": " ".join(command[2:]),
                                           "phases": {k: r.as_dict() for k, r in results.items()}}
        finally:
            removed = scratch_redis.cleanup()
            if removed:
                print(f"-- removed {removed} Redis keys the run created in db {args.redis_db}", file=sys.stderr)

    print(f"\nMATIH control-plane benchmark: {os.cpu_count()} cores shared by the client, the server and "
          f"PostgreSQL; {args.duration:g} s per phase; run {args.run_id}")
    for kind, (results, command) in all_results.items():
        print_report(kind, command, results, args)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
