"""`make run`: the whole service on one machine, as in production.

1. Migrates, collects static files and makes sure of the demo login: one operator
   (operator@matih.local) with an admin password and an API key, kept in
   MATIH_HOME/demo-login.json (readable by its owner only) and the same on every run.
2. Starts as child processes the ASGI web server (HTTP and WebSocket) on
   MATIH_HOST:MATIH_PORT, a Celery worker and celery beat, each writing its log to
   MATIH_HOME/logs/ (web.log, worker.log, beat.log).
3. Waits until the web server answers /healthz, the worker answers a ping and beat has
   started, then prints the banner (URLs, login, key, a curl to try, where the logs
   are): the last thing it prints until it is told to stop.
4. Ctrl-C (SIGINT) or SIGTERM stops the web server, the worker and beat, then the
   embedded PostgreSQL and Redis if this run started them. Engines that DATABASE_URL or
   REDIS_URL name, and embedded ones that were already running, are left running.

The database and Redis are DATABASE_URL/REDIS_URL, or the embedded ones (matih.embedded),
started when the settings are read.
"""
from __future__ import annotations

import json
import logging
import os
import secrets
import shlex
import signal
import socket
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connections
from django.utils import timezone

from iam.auth import api_key_from_raw
from iam.models import User
from iam.services import api_key_create, operator_get_or_create
from matih import embedded
from matih.processes import Child, ChildExited

DEMO_OPERATOR = "operator@matih.local"
DEMO_KEY_NAME = "make run"
READY_TIMEOUT = 120.0  # seconds for each child to be ready (a cold start on a busy machine)
CHILDREN = ("web", "worker", "beat")


class Stop(BaseException):
    """SIGINT or SIGTERM arrived: stop everything this run started. Like KeyboardInterrupt, not an
    Exception: no `except Exception` on the way (a readiness poll's) may swallow it."""


def _raise_stop(signum, frame):
    raise Stop(signal.Signals(signum).name)


@dataclass
class DemoLogin:
    email: str
    password: str
    key: str


def demo_login(path: Path) -> DemoLogin:
    """The demo operator's login, the same on every run.

    1. Read what an earlier run kept in `path` (nothing the first time, or if unreadable).
    2. The operator exists (made if not), active, staff and superuser.
    3. The kept password is its password (set again if it was changed in the admin since,
       so the banner's login always works); the first run makes one.
    4. The kept key is used while it is live for this operator; the first run, or after
       the key was revoked (or on another database), makes one. No key per run.
    5. What changed is written back, readable by the owner only.
    """
    try:
        kept = json.loads(path.read_text())
    except (OSError, ValueError):
        kept = {}
    operator = operator_get_or_create(email=DEMO_OPERATOR)
    User.objects.filter(id=operator.id).update(is_active=True, is_staff=True, is_superuser=True)
    operator.refresh_from_db()

    password = kept.get("password") or secrets.token_urlsafe(12)
    if not operator.check_password(password):
        operator.set_password(password)
        operator.save(update_fields=["password"])

    key = kept.get("key")
    live = api_key_from_raw(key) if key else None
    if live is None or live.user_id != operator.id:
        key = api_key_create(user=operator, name=DEMO_KEY_NAME).raw

    login = DemoLogin(email=DEMO_OPERATOR, password=password, key=key)
    if asdict(login) != kept:
        _write_private(path, json.dumps(asdict(login), indent=2) + "\n")
    elif path.stat().st_mode & 0o077:
        path.chmod(0o600)
    return login


def _sweep_every_interval() -> None:
    """The sweeper's beat schedule at this run's MATIH_SWEEP_INTERVAL (the migration made it with the
    value of its own day; without this a changed setting, or the simulated cloud's shorter default,
    would never reach beat)."""
    from django_celery_beat.models import IntervalSchedule, PeriodicTask, PeriodicTasks

    from provisioning.seed import ensure_sweep_periodic_task

    ensure_sweep_periodic_task(IntervalSchedule, PeriodicTask, PeriodicTasks)


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read, whole or not at all."""
    partial = path.with_name(path.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        os.fchmod(file.fileno(), 0o600)  # O_CREAT's mode does not apply to a file left by a crash
        file.write(text)
    os.replace(partial, path)


def _refuse_a_busy_port(host: str, port: int) -> None:
    """Fail before anything starts, with what to do, rather than after gunicorn's retries."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn binds
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise CommandError(f"Cannot serve on {host}:{port} ({exc.strerror}): something else listens "
                               f"there. Set MATIH_PORT (or --port) to a free port.") from None


def shown(path: Path) -> str:
    """A path as a user in the project's folder would type it."""
    absolute, here = os.path.abspath(path), os.getcwd()  # symlinks kept: .venv may be one
    return os.path.relpath(absolute, here) if absolute.startswith(here + os.sep) else absolute


class Command(BaseCommand):
    help = ("Run web (ASGI), a Celery worker and beat, with a demo operator login; "
            "Ctrl-C stops them and the embedded engines this run started.")

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("MATIH_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("MATIH_PORT", "8000")))
        parser.add_argument("--web-workers", type=int, default=int(os.environ.get("MATIH_WEB_WORKERS", "2")))
        parser.add_argument("--worker-concurrency", type=int,
                            default=int(os.environ.get("MATIH_WORKER_CONCURRENCY", "4")))

    def handle(self, *args, host: str, port: int, web_workers: int, worker_concurrency: int, **options):
        signal.signal(signal.SIGINT, _raise_stop)
        signal.signal(signal.SIGTERM, _raise_stop)
        children: dict[str, Child] = {}
        logs = embedded.home() / "logs"
        try:
            _refuse_a_busy_port(host, port)
            call_command("migrate", interactive=False, verbosity=0)
            _sweep_every_interval()
            call_command("collectstatic", interactive=False, verbosity=0)
            login = demo_login(embedded.home() / "demo-login.json")
            connections.close_all()  # the children have their own; ours would only idle

            logs.mkdir(parents=True, exist_ok=True)
            node = f"up-{os.getpid()}@{socket.gethostname()}"
            self.stdout.write(f"Starting the web server, a worker and beat (logs in {shown(logs)}/) ...")
            self.stdout.flush()
            for name, command in self._commands(host, port, web_workers, worker_concurrency, node).items():
                children[name] = self._start(name, command, logs / f"{name}.log")
            self._wait_until_ready(children, f"http://{host}:{port}", node)
            self.stdout.write(self._banner(host, port, login, logs))
            self.stdout.flush()
            while True:
                for name, child in children.items():
                    if not child.alive():
                        raise CommandError(f"{name} exited with {child.process.returncode}; everything was "
                                           f"stopped. Its log: {shown(child.log_path)}\n{child.log_tail(15)}")
                time.sleep(0.5)
        except Stop:
            pass
        except ChildExited as exc:
            raise CommandError(f"{exc}\nEverything was stopped; the logs are in {shown(logs)}/.") from None
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the stop short
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            self._stop(children)

    # --- the children ----------------------------------------------------------------------------

    def _commands(self, host: str, port: int, web_workers: int, worker_concurrency: int,
                  node: str) -> dict[str, tuple[list[str], dict]]:
        env = {**os.environ, "DATABASE_URL": settings.DATABASE_URL, "REDIS_URL": settings.REDIS_URL,
               "PYTHONUNBUFFERED": "1"}
        python = sys.executable
        return {
            "web": ([python, "-m", "gunicorn", "matih.asgi:application", "-k", "uvicorn_worker.UvicornWorker",
                     "-w", str(web_workers), "-b", f"{host}:{port}", "--graceful-timeout", "5",
                     "--no-control-socket",  # one socket per user by default: two servers would fight over it
                     "--access-logfile", "-" if os.environ.get("MATIH_ACCESS_LOG") else "/dev/null"],
                    {**env, "MATIH_DB_POOL": "true"}),
            "worker": ([python, "-m", "celery", "-A", "matih", "worker", "-l", "info", "-P", "prefork",
                        "-c", str(worker_concurrency), "-n", node, "--without-gossip", "--without-mingle"], env),
            "beat": ([python, "-m", "celery", "-A", "matih", "beat", "-l", "info",
                      "--scheduler", "django_celery_beat.schedulers:DatabaseScheduler", "--pidfile", ""], env),
        }

    def _start(self, name: str, command: tuple[list[str], dict], log_path: Path) -> Child:
        argv, env = command
        with log_path.open("a") as log:  # one log across runs, each run's part headed
            log.write(f"\n===== manage.py up (pid {os.getpid()}) started {name} at {timezone.now().isoformat()}\n")
        return Child(name, argv, env=env, log_path=log_path, append=True)

    def _wait_until_ready(self, children: dict[str, Child], base: str, node: str) -> None:
        from matih.celery import app as celery_app

        logging.getLogger("httpx").setLevel(logging.WARNING)  # the polls of /healthz are not news
        children["web"].wait_for_http(f"{base}/healthz", timeout=READY_TIMEOUT)
        children["worker"].wait_until(lambda: bool(celery_app.control.ping(destination=[node], timeout=0.5)),
                                      timeout=READY_TIMEOUT, interval=0.2, what="answering a ping")
        children["beat"].wait_for_log("beat: Starting", timeout=READY_TIMEOUT)

    def _stop(self, children: dict[str, Child]) -> None:
        if children:
            self.stdout.write("\nStopping the web server, the worker and beat ...")
            self.stdout.flush()
        for child in children.values():
            child.signal_group(signal.SIGTERM)
        for child in children.values():
            child.stop(grace=10)
        connections.close_all()
        stopped = embedded.stop_started_here()
        parts = [", ".join(children)] if children else []
        if stopped:
            parts.append(f"the embedded {' and '.join(stopped)}")
        if parts:
            self.stdout.write(f"Stopped: {', and '.join(parts)}.")
            self.stdout.flush()

    # --- the banner ------------------------------------------------------------------------------

    def _banner(self, host: str, port: int, login: DemoLogin, logs: Path) -> str:
        base = f"http://{host}:{port}"
        body = json.dumps({"name": "Acme Corporation", "slug": "acme", "tier": "PROFESSIONAL",
                           "region": "eastus", "adminEmail": "admin@acme.com"}, separators=(",", ":"))
        curl = (f"curl -s -X POST {base}/api/v1/tenants -H {shlex.quote('Authorization: Bearer ' + login.key)} "
                f"-H 'Content-Type: application/json' -d {shlex.quote(body)}")
        python = shown(Path(sys.executable))
        if "/" not in python:
            python = f"./{python}"
        watch = f"{python} manage.py provisioning_status acme --watch"
        if os.environ.get("MATIH_HOME"):
            watch = f"MATIH_HOME={shlex.quote(os.environ['MATIH_HOME'])} {watch}"
        if os.environ.get("DATABASE_URL") or os.environ.get("REDIS_URL"):
            watch += "   # with this run's DATABASE_URL/REDIS_URL"
        started = embedded.started_here()
        tails = " ".join(shown(logs / f"{name}.log") for name in CHILDREN)
        heading = self.style.SUCCESS(f"MATIH tenant lifecycle is up on {base}")
        return f"""
{heading}
  API          {base}/api/v1/tenants   (docs: {base}/api/docs/)
  Dashboard    {base}/admin/provisioning/dashboard/
  Admin login  {login.email} / {login.password}
  API key      {login.key}
               (the demo operator's, kept with the login in {shown(embedded.home() / 'demo-login.json')})
  Backend      {settings.MATIH_INFRA_BACKEND} (time scale {settings.MATIH_SIM_TIME_SCALE})
  Database     {self._engine('DATABASE_URL', embedded.POSTGRESQL, started)}
  Redis        {self._engine('REDIS_URL', embedded.REDIS, started)}
  Logs         tail -f {tails}

Register a tenant, then watch it:
{curl}
{watch}

{self._what_ctrl_c_stops(started)}"""

    @staticmethod
    def _engine(variable: str, name: str, started: dict[str, int]) -> str:
        if os.environ.get(variable):
            return f"{variable} (left running on Ctrl-C)"
        where = shown(embedded.home())
        if name in started:
            return f"embedded {name} under {where}/, started by this run"
        return f"embedded {name} under {where}/, already running (left running on Ctrl-C)"

    @staticmethod
    def _what_ctrl_c_stops(started: dict[str, int]) -> str:
        engines = f", then the embedded {' and '.join(started)} this run started" if started else ""
        return f"Ctrl-C stops the web server, the worker and beat{engines}."
