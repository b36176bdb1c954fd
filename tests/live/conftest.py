"""Live status: the ASGI server as in production (gunicorn + UvicornWorker on matih.asgi, pooled
database connections) on the test database, and the data plane's real worker (tests/dataplane)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from tests.dataplane.conftest import (  # noqa: F401  (fixtures, shared with the data-plane tests)
    ROOT,
    celery_worker,
    dataplane,
    fast_settings,
    seeded,
    test_output_dir,
    worker_env,
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class AsgiServer:
    """`gunicorn matih.asgi:application -k uvicorn_worker.UvicornWorker`, as `manage.py up` runs it."""

    def __init__(self, env: dict, log_path, workers: int = 2):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "matih.asgi:application", "-k", "uvicorn_worker.UvicornWorker",
             "-w", str(workers), "-b", f"127.0.0.1:{self.port}", "--graceful-timeout", "3"],
            cwd=ROOT, env=env, stdout=log_path.open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 40) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the ASGI server exited: {self.log()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the ASGI server did not answer: {self.log()[-3000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)


@pytest.fixture(scope="session")
def asgi_server(django_db_setup, django_db_blocker, test_output_dir):
    env = worker_env()
    env["MATIH_DB_POOL"] = "true"
    server = AsgiServer(env, test_output_dir / "asgi-server.log")
    yield server
    server.stop()
