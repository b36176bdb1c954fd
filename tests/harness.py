"""Real parts for the tests: a Celery worker process (prefork) on the test database and the
configured Redis, a sweeper loop, and the ASGI server as in production. No eager mode anywhere.

A pytest plugin (tests/conftest.py loads it), so each session-scoped part exists once per
session whichever directory's tests use it: one worker, one ASGI server."""
from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connection, connections

from matih.celery import app as celery_app
from matih.processes import Child, children_of, free_port

ROOT = Path(__file__).resolve().parents[1]

# The timing the data-plane tests run with, in the worker and in this process.
FAST = {
    "MATIH_SIM_TIME_SCALE": "0",
    "MATIH_STEP_LEASE": "3",
    "MATIH_RETRY_BACKOFF": "0.4,0.8,1.2",
    "MATIH_RETRY_JITTER": "0",
    "MATIH_SWEEP_INTERVAL": "1",
    "MATIH_SIM_FAULT_RATE": "0",
    "MATIH_WEBHOOK_BACKOFF": "0.2,0.4,0.6",
    "MATIH_INFRA_BACKEND": "simulated",
    "MATIH_WEBHOOK_ALLOW_PRIVATE": "true",  # the webhook tests' receiver listens on 127.0.0.1
}
FAST_SETTINGS = {
    "MATIH_SIM_TIME_SCALE": 0.0, "MATIH_STEP_LEASE": 3, "MATIH_RETRY_BACKOFF": [0.4, 0.8, 1.2],
    "MATIH_RETRY_JITTER": 0.0, "MATIH_SWEEP_INTERVAL": 1, "MATIH_SIM_FAULT_RATE": 0.0,
    "MATIH_WEBHOOK_BACKOFF": [0.2, 0.4, 0.6], "MATIH_INFRA_BACKEND": "simulated", "MATIH_WEBHOOK_ALLOW_PRIVATE": True,
}


def database_url_of(db: dict) -> str:
    host = db.get("HOST") or ""
    user = quote(db.get("USER") or "postgres")
    password = quote(db.get("PASSWORD") or "")
    auth = f"{user}:{password}@" if password else f"{user}@"
    if host.startswith("/"):
        return f"postgresql://{auth}/{db['NAME']}?host={host}"
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgresql://{auth}{host}{port}/{db['NAME']}"


class WorkerProcess(Child):
    """`celery -A matih worker` as in production, on the test database."""

    def __init__(self, env: dict, log_path: Path, concurrency: int = 2):
        super().__init__("celery worker", [
            sys.executable, "-m", "celery", "-A", "matih", "worker", "-P", "prefork", "-c", str(concurrency),
            "-l", "info", "--without-gossip", "--without-mingle", "-n", f"test-{os.getpid()}@%h"],
            cwd=ROOT, env=env, log_path=log_path)
        self.wait_for_log("ready.", timeout=30)

    def children(self) -> list[int]:
        return children_of(self.pid)


def worker_env() -> dict:
    env = {k: v for k, v in os.environ.items()}
    env.update(FAST)
    env["DATABASE_URL"] = database_url_of(settings.DATABASES["default"])
    env["REDIS_URL"] = settings.REDIS_URL
    env["MATIH_CHANNEL_PREFIX"] = settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"]
    env["MATIH_EMAIL_BACKEND"] = "django.core.mail.backends.filebased.EmailBackend"
    env["MATIH_EMAIL_FILE_PATH"] = str(ROOT / "test-output" / "mail")
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture(scope="session")
def test_output_dir() -> Path:
    path = ROOT / "test-output"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="session")
def celery_worker(django_db_setup, django_db_blocker, test_output_dir):
    """One worker process for the session, on the test database."""
    celery_app.control.purge()
    name = settings.DATABASES["default"]["NAME"]
    worker = WorkerProcess(worker_env(), test_output_dir / f"celery-worker-{name}.log")
    _session_workers.append(worker)
    yield worker
    _session_workers.remove(worker)
    worker.stop()


_session_workers: list = []


def _transactional(item) -> bool:
    marker = item.get_closest_marker("django_db")
    return bool(marker and marker.kwargs.get("transaction")) or bool(
        {"transactional_db", "live_server"} & set(getattr(item, "fixturenames", ())))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item, nextitem):
    """Before any fixture's teardown (the flush of a transactional test among them): once the
    session's worker runs, every test that committed rows may have sent it work (a registration
    its canvas, a cancel its rollback), and a worker still writing while the flush truncates the
    tables deadlocked the flush once. Wait until the broker holds no task, queued or unacknowledged
    (acks_late: a task is acknowledged when it ends), and no job is held under a live lease."""
    if _session_workers and _transactional(item):
        wait_until_idle()


def wait_until_idle(timeout: float = 10.0) -> None:
    import redis
    from django.utils import timezone

    from provisioning.models import ProvisioningJob

    def broker_idle(broker) -> bool:
        try:
            return broker.llen("celery") == 0 and broker.hlen("unacked") == 0
        except redis.RedisError:  # a chaos test stopped or wiped Redis: nothing is queued there
            return True

    broker = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if broker_idle(broker) and not ProvisioningJob.objects.filter(
                    status__in=["RUNNING", "ROLLING_BACK", "CANCELLING"], lease_expires_at__gt=timezone.now()).exists():
                return
            time.sleep(0.05)
    finally:
        broker.close()


@pytest.fixture
def fast_settings(settings):
    for key, value in FAST_SETTINGS.items():
        setattr(settings, key, value)
    return settings


@pytest.fixture
def seeded(transactional_db, fast_settings):
    """Reference data the migrations seed (a transactional test's flush removes it)."""
    from billing.models import BillingPlan
    from billing.seed import seed_plans
    from deploy.models import Cluster
    from deploy.seed import seed_shared_clusters

    seed_plans(BillingPlan)
    seed_shared_clusters(Cluster)
    yield


@pytest.fixture
def dataplane(seeded, celery_worker):
    """A registered tenant provisions: seeded data, a live worker, fast timings."""
    yield celery_worker
    wait_until_quiet()


class SweeperLoop:
    def __init__(self, interval: float = 0.3):
        from provisioning.engine.sweeper import sweep

        self.interval = interval
        self.reports = []
        self._stop = threading.Event()

        def loop():
            try:
                while not self._stop.is_set():
                    self.reports.append(sweep())
                    self._stop.wait(self.interval)
            finally:
                connection.close()

        self.thread = threading.Thread(target=loop, name="test-sweeper", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(10)


@pytest.fixture
def sweeper(dataplane):
    loop = SweeperLoop()
    yield loop
    loop.stop()


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.05, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def wait_until_quiet(timeout: float = 20.0) -> None:
    """Let in-flight work end before the test's flush (no job RUNNING or rolling back)."""
    from provisioning.models import ProvisioningJob

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        busy = ProvisioningJob.objects.filter(status__in=["RUNNING", "ROLLING_BACK", "CANCELLING"]).exists()
        if not busy:
            break
        time.sleep(0.1)
    for alias in connections:
        connections[alias].close()


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
