"""Control-plane benchmark: tenant registration over HTTP, beside the floor of what Django allows.

    python bench/control_plane.py [--server wsgi|asgi|both] [--duration 15] [--slice 3] [--repeat 3]
                                  [--connections 16] [--rate R] [--workers 4] [--json FILE]

For each server kind it:
1. creates a scratch database (`matih_bench` on the PostgreSQL of DATABASE_URL, or on
   the embedded one when unset), migrates it and makes an operator key with
   `manage.py operator_key`;
2. starts two gunicorns on 127.0.0.1 with the same worker class and count: the product
   (`matih.wsgi` on sync workers, or `matih.asgi` on `uvicorn_worker.UvicornWorker`) and
   the floor (`bench.floor`: a minimal Django + DRF app that validates the same body and
   writes the same rows in one transaction, with no auth, logging, metrics or Celery
   publish), both on the scratch database;
3. drives them from this process over HTTP/1.1 (asyncio, raw streams: a light client,
   since it shares the machine's cores with the servers and PostgreSQL):
   a. closed loop at saturation: C connections, each sends its next request as soon
      as the answer arrives, for a fixed duration: `GET /healthz` (the product's
      baseline), the product's `POST /api/v1/tenants`, the floor's;
   b. open loop at half the floor's saturation (the median of the closed-loop runs;
      `--rate` to choose): requests sent on a fixed schedule whatever the answers do,
      each latency measured from its *scheduled* send time, so a stall is charged to
      every request it delays (no coordinated omission); the same three targets;
   each stage `--repeat` times; within a run each phase is measured in slices of a few
   seconds (`--slice`), the phases' slices side by side in alternating order, each round
   of slices after the machine has gone quiet: other engineers share it, and their work
   comes and goes within seconds, so slices side by side see the same of it;
4. prints each run's figures (p50/p95/p99/max latency, throughput, errors, CPU of the
   client, the server, PostgreSQL and the rest of the machine, and the server's and
   PostgreSQL's CPU per answer), the medians across runs, the ratios and the targets
   (product saturation >= 0.8x the floor's; product p99 <= 50 ms at half the floor's
   saturation); `--json FILE` writes the same under stable keys; then stops the
   servers and drops the scratch database.

Traffic goes only to 127.0.0.1; every loop is bounded in time and count.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import itertools
import json
import math
import os
import random
import socket
import statistics
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
SATURATION_TARGET = 0.8  # the product's saturation against the floor's, at least
P99_TARGET_MS = 50.0  # the product's p99 at half the floor's saturation, at most
# Where each target's application lives, by server kind.
APPLICATIONS = {
    ("product", "wsgi"): "matih.wsgi:application",
    ("product", "asgi"): "matih.asgi:application",
    ("floor", "wsgi"): "bench.floor.wsgi:application",
    ("floor", "asgi"): "bench.floor.asgi:application",
}
SETTINGS_MODULES = {"product": "matih.settings", "floor": "bench.floor.settings"}
# The measured phases: (key, target, endpoint, mode).
PHASES = [
    ("closed-healthz", "product", "healthz", "closed"),
    ("closed-product", "product", "register", "closed"),
    ("closed-floor", "floor", "register", "closed"),
    ("open-healthz", "product", "healthz", "open"),
    ("open-product", "product", "register", "open"),
    ("open-floor", "floor", "register", "open"),
]


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
            "serverCpuMsPerAnswer": round(self.cpu_ms_per_answer("server"), 3),
            "postgresCpuMsPerAnswer": round(self.cpu_ms_per_answer("postgres"), 3),
        }

    def absorb(self, other: "PhaseResult") -> "PhaseResult":
        """This phase and a later slice of it, as one phase (CPU shares weighted by time)."""
        seconds = self.seconds + other.seconds
        owners = set(self.cpu) | set(other.cpu)
        self.cpu = {owner: (self.cpu.get(owner, 0.0) * self.seconds + other.cpu.get(owner, 0.0) * other.seconds)
                    / seconds for owner in owners}
        self.seconds = seconds
        self.latencies_ms += other.latencies_ms
        self.statuses += other.statuses
        self.transport_errors += other.transport_errors
        self.connections_opened += other.connections_opened
        return self

    def cpu_ms_per_answer(self, owner: str) -> float:
        """CPU milliseconds `owner` spent per answer of the phase (the share is of one core)."""
        answers = len(self.latencies_ms)
        if not answers:
            return float("nan")
        return self.cpu.get(owner, 0.0) / 100.0 * self.seconds * 1000.0 / answers


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

    def __init__(self, port: int, operator_key: str | None, slug_prefix: str):
        self.host_header = f"Host: {HOST}:{port}\r\n"
        self.auth_header = f"Authorization: Bearer {operator_key}\r\n" if operator_key else ""
        self.slug_prefix = slug_prefix
        self.counter = itertools.count(1)
        self.healthz_bytes = f"GET /healthz HTTP/1.1\r\n{self.host_header}\r\n".encode()

    def healthz(self) -> bytes:
        return self.healthz_bytes

    def registration(self) -> bytes:
        n = next(self.counter)
        slug = f"{self.slug_prefix}-{n}"
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


async def run_phase(name: str, endpoint: str, mode: str, workload: Workload, server: "Server", args,
                    rate: float | None = None) -> PhaseResult:
    result = PhaseResult(name=name, endpoint=endpoint, mode=mode, seconds=args.duration)
    make_payload = workload.payload_for(endpoint)
    meter = CpuMeter(server.pgid)
    opened_before = Connection.opened
    meter.start()
    if mode == "closed":
        await closed_loop(server.port, make_payload, args.connections, args.duration, result)
    else:
        result.offered_rate = rate
        await open_loop(server.port, make_payload, rate, args.duration, args.open_max_connections, result)
    result.cpu = meter.stop()
    result.connections_opened = Connection.opened - opened_before
    return result


# --- The servers ----------------------------------------------------------------------------


def server_command(target: str, kind: str, port: int, args) -> list[str]:
    gunicorn = [sys.executable, "-m", "gunicorn", "--bind", f"{HOST}:{port}", "--workers", str(args.workers),
                "--backlog", "2048", "--keep-alive", "75", "--graceful-timeout", "5", "--timeout", "60"]
    worker_class = "sync" if kind == "wsgi" else "uvicorn_worker.UvicornWorker"
    return gunicorn + ["--worker-class", worker_class, APPLICATIONS[target, kind]]


class Server(Child):
    """gunicorn with the chosen worker class, in a session of its own (the master and its workers)."""

    def __init__(self, target: str, kind: str, env: dict, args, log_path: Path):
        self.target = target
        self.kind = kind
        self.port = free_port(HOST)
        super().__init__(f"{target} {kind} server", server_command(target, kind, self.port, args),
                         env={**env, "DJANGO_SETTINGS_MODULE": SETTINGS_MODULES[target]}, cwd=ROOT,
                         log_path=log_path)
        self.pgid = self.pid  # start_new_session: the master leads its own group

    def wait_ready(self, seconds: float = 60.0) -> None:
        self.wait_for_http(f"http://{HOST}:{self.port}/healthz", timeout=seconds)


# --- Figures across runs --------------------------------------------------------------------


def _median(values: list[float]) -> float:
    values = [v for v in values if v == v]  # NaN-free
    return statistics.median(values) if values else float("nan")


def medians(runs: list[dict[str, PhaseResult]]) -> dict[str, dict]:
    """Per phase, the median across runs of each figure (throughput, percentiles, CPU)."""
    out: dict[str, dict] = {}
    for key, *_ in PHASES:
        results = [run[key] for run in runs if key in run]
        if not results:
            continue
        owners = sorted({owner for r in results for owner in r.cpu})
        out[key] = {
            "runs": len(results),
            "throughput": round(_median([r.throughput for r in results]), 1),
            **{f"p{p}": round(_median([r.percentile(p) for r in results]), 2) for p in (50, 95, 99)},
            "max": round(_median([max(r.latencies_ms, default=float("nan")) for r in results]), 2),
            "errors": sum(r.non_2xx + sum(r.transport_errors.values()) for r in results),
            "cpu": {owner: round(_median([r.cpu.get(owner, 0.0) for r in results]), 1) for owner in owners},
            "serverCpuMsPerAnswer": round(_median([r.cpu_ms_per_answer("server") for r in results]), 3),
            "postgresCpuMsPerAnswer": round(_median([r.cpu_ms_per_answer("postgres") for r in results]), 3),
        }
    return out


def _ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b and a == a and b == b else float("nan")


def ratios(runs: list[dict[str, PhaseResult]], median: dict[str, dict]) -> dict:
    """The product against the floor and against /healthz: per run (same minute) and of the medians."""
    def per_run(a: str, b: str, figure) -> list[float]:
        return [_ratio(figure(run[a]), figure(run[b])) for run in runs if a in run and b in run]

    def of_medians(a: str, b: str, figure: str) -> float:
        return _ratio(median[a][figure], median[b][figure]) if a in median and b in median else float("nan")

    throughput, p99 = (lambda r: r.throughput), (lambda r: r.percentile(99))
    return {
        "saturationProductToFloor": of_medians("closed-product", "closed-floor", "throughput"),
        "saturationProductToFloorPerRun": per_run("closed-product", "closed-floor", throughput),
        "saturationProductToHealthz": of_medians("closed-product", "closed-healthz", "throughput"),
        "saturationFloorToHealthz": of_medians("closed-floor", "closed-healthz", "throughput"),
        "p99ProductToFloor": of_medians("open-product", "open-floor", "p99"),
        "p99ProductToFloorPerRun": per_run("open-product", "open-floor", p99),
        "p99ProductToHealthz": of_medians("open-product", "open-healthz", "p99"),
        "serverCpuProductToFloor": of_medians("open-product", "open-floor", "serverCpuMsPerAnswer"),
    }


def targets(median: dict[str, dict], ratio: dict, rate: float) -> dict:
    saturation = ratio["saturationProductToFloor"]
    product = median.get("open-product", {})
    p99 = product.get("p99", float("nan"))
    return {
        "saturationRatio": {"value": saturation, "atLeast": SATURATION_TARGET,
                            "met": bool(saturation == saturation and saturation >= SATURATION_TARGET)},
        "p99Ms": {"value": p99, "atMost": P99_TARGET_MS, "offeredRate": rate,
                  "met": bool(p99 == p99 and p99 <= P99_TARGET_MS and not product.get("errors"))},
    }


def machine_load(runs: list[dict[str, PhaseResult]]) -> dict:
    """How busy the rest of the machine was during the measured phases (% of one core)."""
    rest = [r.cpu.get("rest", 0.0) for run in runs for r in run.values()]
    busy = [r.cpu.get("machineBusy", 0.0) for run in runs for r in run.values()]
    return {
        "otherWorkMedian": round(_median(rest), 1), "otherWorkMax": round(max(rest, default=float("nan")), 1),
        "contendedPhases": sum(1 for value in rest if value > 25), "phases": len(rest),
        "machineBusyMedian": round(_median(busy), 1),
    }


# --- Report ---------------------------------------------------------------------------------


HEADER = (
    f"  {'phase':<38} {'answers':>7} {'ok/s':>7} {'p50':>6} {'p95':>6} {'p99':>6} {'max':>7} {'err':>4}"
    f"  {'cli%':>4} {'srv%':>4} {'pg%':>4} {'oth%':>4} {'all%':>4}  {'srv ms':>6} {'pg ms':>5}"
)


def _row(result: PhaseResult, prefix: str = "") -> str:
    cpu = result.cpu
    errors = result.non_2xx + sum(result.transport_errors.values())
    return (
        f"  {prefix + result.name:<38} {len(result.latencies_ms):>7} {result.throughput:>7.1f} "
        f"{result.percentile(50):>6.1f} {result.percentile(95):>6.1f} {result.percentile(99):>6.1f} "
        f"{max(result.latencies_ms, default=float('nan')):>7.1f} {errors:>4}  "
        f"{cpu.get('client', 0):>4.0f} {cpu.get('server', 0):>4.0f} {cpu.get('postgres', 0):>4.0f} "
        f"{cpu.get('rest', 0):>4.0f} {cpu.get('machineBusy', 0):>4.0f}  "
        f"{result.cpu_ms_per_answer('server'):>6.2f} {result.cpu_ms_per_answer('postgres'):>5.2f}"
    )


def _median_row(key: str, figures: dict) -> str:
    cpu = figures["cpu"]
    return (
        f"  {key:<38} {figures['runs']:>7} {figures['throughput']:>7.1f} {figures['p50']:>6.1f} "
        f"{figures['p95']:>6.1f} {figures['p99']:>6.1f} {figures['max']:>7.1f} {figures['errors']:>4}  "
        f"{cpu.get('client', 0):>4.0f} {cpu.get('server', 0):>4.0f} {cpu.get('postgres', 0):>4.0f} "
        f"{cpu.get('rest', 0):>4.0f} {cpu.get('machineBusy', 0):>4.0f}  "
        f"{figures['serverCpuMsPerAnswer']:>6.2f} {figures['postgresCpuMsPerAnswer']:>5.2f}"
    )


def _details(result: PhaseResult) -> str:
    details = []
    if result.non_2xx:
        details.append("non-2xx " + ", ".join(f"{code}: {n}" for code, n in sorted(result.statuses.items())
                                              if not 200 <= code < 300))
    if result.transport_errors:
        details.append("transport " + ", ".join(f"{k}: {n}" for k, n in result.transport_errors.items()))
    other = result.cpu.get("rest", 0)
    if other > 25:
        details.append(f"contended: other work took {other:.0f}% of a core, figures are pessimistic")
    return "      " + "; ".join(details) if details else ""


def _fmt(values: list[float]) -> str:
    return ", ".join(f"x{v:.2f}" for v in values)


def print_report(kind: str, report: dict, runs: list[dict[str, PhaseResult]]) -> None:
    print(f"\n== {kind}: product `{report['command']['product']}`")
    print(f"   floor `{report['command']['floor']}`")
    print("  latency in ms; cli/srv/pg = CPU of the client, the measured server's processes, PostgreSQL in % of one"
          f" core; oth = the rest of the machine's busy time (kernel, Redis, other work); all = machine busy, % of"
          f" {os.cpu_count()} cores; srv/pg ms = CPU milliseconds per answer")
    print(HEADER)
    for index, run in enumerate(runs, 1):
        for result in run.values():
            print(_row(result, f"#{index} "))
            if _details(result):
                print(_details(result))
    print(f"  medians across {len(runs)} run(s):")
    for key, figures in report["medians"].items():
        print(_median_row(key, figures))
    ratio, target, load = report["ratios"], report["targets"], report["machine"]
    print(f"  saturation: product / floor x{ratio['saturationProductToFloor']:.2f} (per run "
          f"{_fmt(ratio['saturationProductToFloorPerRun'])}); product / healthz x{ratio['saturationProductToHealthz']:.3f},"
          f" floor / healthz x{ratio['saturationFloorToHealthz']:.3f}")
    print(f"  open loop at {report['offeredRate']:g}/s: p99 product / floor x{ratio['p99ProductToFloor']:.2f} (per run "
          f"{_fmt(ratio['p99ProductToFloorPerRun'])}); product / healthz x{ratio['p99ProductToHealthz']:.1f};"
          f" server CPU per registration product / floor x{ratio['serverCpuProductToFloor']:.2f}")
    sat, p99 = target["saturationRatio"], target["p99Ms"]
    print(f"  targets: saturation x{sat['value']:.2f} of the floor's (>= x{sat['atLeast']}: "
          f"{'met' if sat['met'] else 'MISSED'}); p99 {p99['value']:.1f} ms at {p99['offeredRate']:g}/s offered "
          f"(<= {p99['atMost']:g} ms: {'met' if p99['met'] else 'MISSED'})")
    print(f"  machine: other work took a median {load['otherWorkMedian']:.0f}% of a core (max "
          f"{load['otherWorkMax']:.0f}%) during the {load['phases']} phases; {load['contendedPhases']} contended"
          f" (> 25%)")


# --- The run --------------------------------------------------------------------------------


async def wait_for_quiet_machine(limit: float, busy_threshold: float = 25.0) -> float:
    """Wait (at most `limit` seconds) until the machine is near idle between phases, so that
    other work on a shared machine does not get into the figures; say so if it never is.
    Returns the last reading (% of one core)."""
    deadline = time.monotonic() + limit
    while True:
        busy_before, total_before = _machine_busy()
        await asyncio.sleep(1.0)
        busy_after, total_after = _machine_busy()
        busy = 100.0 * (os.cpu_count() or 1) * (busy_after - busy_before) / max(total_after - total_before, 1e-9)
        if busy < busy_threshold:
            return busy
        if time.monotonic() > deadline:
            print(f"   note: the machine is {busy:.0f}% busy (of one core) before the phase; other work is "
                  "running, see the oth% column", file=sys.stderr)
            return busy


def _label(key: str, rate: float | None, args) -> str:
    _, target, endpoint, mode = next(phase for phase in PHASES if phase[0] == key)
    what = "GET /healthz" if endpoint == "healthz" else f"POST /tenants ({target})"
    return f"closed {args.connections} {what}" if mode == "closed" else f"open {rate:g}/s {what}"


async def drive(kind: str, servers: dict[str, Server], workloads: dict[str, Workload], args) -> tuple[list, float]:
    """The closed-loop stage `--repeat` times, then the open loop at half the floor's saturation."""
    if args.warmup > 0:  # unmeasured: every worker imports, connects to PostgreSQL and Redis, fills caches
        warm = argparse.Namespace(**{**vars(args), "duration": args.warmup})
        for target, server in servers.items():
            await run_phase("warm-up", "register", "closed", workloads[target], server, warm)
        await run_phase("warm-up", "healthz", "closed", workloads["product"], servers["product"], warm)
    runs: list[dict[str, PhaseResult]] = [{} for _ in range(args.repeat)]
    slices = max(1, math.ceil(args.duration / args.slice))
    slice_args = argparse.Namespace(**{**vars(args), "duration": args.duration / slices})

    async def stage(mode: str, rate: float | None) -> None:
        """Each run: `slices` rounds; a round gives every phase of the stage one slice, back to
        back, in alternating order, after the machine has gone quiet. Other work on a shared
        machine comes and goes within seconds: slices side by side see the same of it."""
        keys = [key for key, _, _, phase_mode in PHASES if phase_mode == mode and key in args.phases]
        for index, run in enumerate(runs):
            for round_ in range(slices):
                await wait_for_quiet_machine(args.quiet_wait)
                for key in keys if (index * slices + round_) % 2 == 0 else keys[::-1]:
                    _, target, endpoint, _ = next(phase for phase in PHASES if phase[0] == key)
                    await asyncio.sleep(args.pause)  # let the last slice's stragglers settle
                    part = await run_phase(_label(key, rate, args), endpoint, mode, workloads[target],
                                           servers[target], slice_args, rate)
                    run[key] = run[key].absorb(part) if key in run else part
            for key in keys:
                print(f"   {kind} #{index + 1}: {_row(run[key]).strip()}", file=sys.stderr, flush=True)

    await stage("closed", None)
    floor_saturation = _median([run["closed-floor"].throughput for run in runs if "closed-floor" in run])
    rate = args.rate or (round(floor_saturation / 2) if floor_saturation == floor_saturation else 100.0)
    print(f"   {kind}: open loop at {rate:g}/s (" + ("--rate" if args.rate else "half the floor's saturation")
          + ")", file=sys.stderr, flush=True)
    await stage("open", rate)
    return runs, rate


def bench_server(kind: str, database: ScratchDatabase, redis_url: str, args, log_dir: Path) -> tuple[dict, list]:
    env = {
        **os.environ,
        "DATABASE_URL": database.url,
        "REDIS_URL": redis_url,
        "MATIH_DB_POOL": "true" if kind == "asgi" else "false",
        "PYTHONUNBUFFERED": "1",
    }
    database.create()
    try:
        manage({**env, "DJANGO_SETTINGS_MODULE": "matih.settings"}, "migrate", "--noinput")
        operator_key = manage({**env, "DJANGO_SETTINGS_MODULE": "matih.settings"}, "operator_key",
                              "bench-operator@matih.test").strip().splitlines()[-1]
        servers: dict[str, Server] = {}
        try:
            for target in ("product", "floor"):
                servers[target] = Server(target, kind, env, args, log_dir / f"{target}-{kind}.log")
            for server in servers.values():
                server.wait_ready()
            workloads = {
                "product": Workload(servers["product"].port, operator_key, f"b{args.run_id}"),
                "floor": Workload(servers["floor"].port, None, f"f{args.run_id}"),
            }
            runs, rate = asyncio.run(drive(kind, servers, workloads, args))
        finally:
            for server in servers.values():
                server.stop()
        for target, prefix in (("product", f"b{args.run_id}-"), ("floor", f"f{args.run_id}-")):
            created = sum(run[key].statuses.get(201, 0) for run in runs for key in run if key.endswith(target))
            tenants = database.query("SELECT count(*) FROM tenants_tenant WHERE slug LIKE %s", (prefix + "%",))[0][0]
            jobs = database.query("SELECT count(*) FROM provisioning_provisioningjob j JOIN tenants_tenant t "
                                  "ON t.id = j.tenant_id WHERE t.slug LIKE %s", (prefix + "%",))[0][0]
            print(f"   {kind}: the {target} wrote {tenants} tenants and {jobs} jobs (measured phases answered 201 "
                  f"{created} times; the warm-up made the rest)", file=sys.stderr)
        median = medians(runs)
        ratio = ratios(runs, median)
        report = {
            "command": {target: " ".join(server.command[2:]) for target, server in servers.items()},
            "offeredRate": rate,
            "runs": [{key: result.as_dict() for key, result in run.items()} for run in runs],
            "medians": median,
            "ratios": ratio,
            "targets": targets(median, ratio, rate),
            "machine": machine_load(runs),
        }
        return report, runs
    finally:
        if not args.keep_database:
            database.drop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", choices=["wsgi", "asgi", "both"], default="wsgi",
                        help="the REST API's production server is wsgi (docs/serving.md)")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per measured phase and run")
    parser.add_argument("--slice", type=float, default=3.0,
                        help="a phase is measured in slices this long, interleaved with the others'")
    parser.add_argument("--connections", type=int, default=16, help="closed-loop connections")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each stage; the report gives medians")
    parser.add_argument("--rate", type=float, default=None,
                        help="open-loop offered requests per second (default: half the floor's saturation)")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes, for each server")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds before the phases")
    parser.add_argument("--pause", type=float, default=0.3, help="seconds between slices")
    parser.add_argument("--open-max-connections", type=int, default=64,
                        help="connections the open loop may hold at once")
    parser.add_argument("--phases", default=",".join(key for key, *_ in PHASES),
                        help="comma-separated subset of the six phases to run")
    parser.add_argument("--quiet-wait", type=float, default=60.0,
                        help="seconds to wait before each phase for other work on the machine to stop")
    parser.add_argument("--database-name", default="matih_bench", help="scratch database, dropped at the end")
    parser.add_argument("--keep-database", action="store_true")
    parser.add_argument("--redis-db", type=int, default=14,
                        help="Redis logical database for the Celery messages of the run")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if not (0 < args.duration <= 600 and 0.5 <= args.slice <= 600 and (args.rate is None or 0 < args.rate <= 10_000)
            and 0 < args.connections <= 1024 and 0 < args.workers <= 64 and 0 < args.repeat <= 20):
        parser.error("duration 0-600 s, slice 0.5-600 s, rate 0-10000/s, connections 1-1024, workers 1-64, repeat 1-20")
    args.phases = {phase.strip() for phase in args.phases.split(",") if phase.strip()}
    unknown = args.phases - {key for key, *_ in PHASES}
    if unknown:
        parser.error(f"unknown phase(s) {', '.join(sorted(unknown))}")
    args.run_id = "".join(random.choices(string.ascii_lowercase + string.digits, k=6))

    database = ScratchDatabase(base_database_url(), args.database_name)
    scratch_redis = ScratchRedis(base_redis_url(), args.redis_db)
    scratch_redis.start()
    kinds = ["wsgi", "asgi"] if args.server == "both" else [args.server]
    report = {"machine": {"cpus": os.cpu_count()}, "runId": args.run_id,
              "options": {k: (sorted(v) if isinstance(v, set) else v) for k, v in vars(args).items() if k != "json"},
              "servers": {}}
    all_runs = {}
    with tempfile.TemporaryDirectory(prefix="matih-bench-") as log_dir:
        try:
            for kind in kinds:
                print(f"-- {kind}: preparing {database.name}, starting the product and the floor, "
                      f"{args.workers} workers each", file=sys.stderr)
                report["servers"][kind], all_runs[kind] = bench_server(kind, database, scratch_redis.url, args,
                                                                      Path(log_dir))
        finally:
            removed = scratch_redis.cleanup()
            if removed:
                print(f"-- removed {removed} Redis keys the run created in db {args.redis_db}", file=sys.stderr)

    print(f"\nMATIH control-plane benchmark: {os.cpu_count()} cores shared by the client, the servers and "
          f"PostgreSQL; {args.duration:g} s per phase, {args.repeat} run(s); run {args.run_id}")
    for kind, runs in all_runs.items():
        print_report(kind, report["servers"][kind], runs)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
