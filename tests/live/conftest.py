"""Live status: the ASGI server as in production (gunicorn + UvicornWorker on matih.asgi, pooled
database connections) on the test database, and the data plane's real worker (tests/dataplane)."""
from __future__ import annotations

import sys

import pytest

from matih.processes import Child, free_port

from tests.dataplane.conftest import (  # noqa: F401  (fixtures, shared with the data-plane tests)
    ROOT,
    celery_worker,
    dataplane,
    fast_settings,
    seeded,
    test_output_dir,
    worker_env,
)


class AsgiServer(Child):
    """`gunicorn matih.asgi:application -k uvicorn_worker.UvicornWorker`, as `manage.py up` runs it."""

    def __init__(self, env: dict, log_path, workers: int = 2):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__("ASGI server", [
            sys.executable, "-m", "gunicorn", "matih.asgi:application", "-k", "uvicorn_worker.UvicornWorker",
            "-w", str(workers), "-b", f"127.0.0.1:{self.port}", "--graceful-timeout", "3"],
            cwd=ROOT, env=env, log_path=log_path)
        self.wait_for_http(f"{self.url}/healthz", timeout=40)

    def log(self) -> str:
        return self.log_text()


@pytest.fixture(scope="session")
def asgi_server(django_db_setup, django_db_blocker, test_output_dir):
    env = worker_env()
    env["MATIH_DB_POOL"] = "true"
    server = AsgiServer(env, test_output_dir / "asgi-server.log")
    yield server
    server.stop()
