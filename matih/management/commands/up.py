"""`make run`: the whole service on one machine, as in production.

Migrates, collects static files, makes a demo operator (API key and admin
login), then runs as child processes: the ASGI web server (HTTP and
WebSocket) on MATIH_HOST:MATIH_PORT, a Celery worker and celery beat. The
database and Redis are DATABASE_URL/REDIS_URL, or the embedded ones. Ctrl-C
stops everything.
"""
from __future__ import annotations

import os
import secrets
import signal
import sys
import time

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from iam.models import User
from iam.services import api_key_create, operator_get_or_create
from matih.processes import Child

DEMO_OPERATOR = "operator@matih.local"


class Command(BaseCommand):
    help = "Run web (ASGI), a Celery worker and beat, with a demo operator key."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("MATIH_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("MATIH_PORT", "8000")))
        parser.add_argument("--web-workers", type=int, default=int(os.environ.get("MATIH_WEB_WORKERS", "2")))
        parser.add_argument("--worker-concurrency", type=int,
                            default=int(os.environ.get("MATIH_WORKER_CONCURRENCY", "4")))

    def handle(self, *args, host: str, port: int, web_workers: int, worker_concurrency: int, **options):
        call_command("migrate", interactive=False, verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        operator = operator_get_or_create(email=DEMO_OPERATOR)
        key = api_key_create(user=operator, name="make run").raw
        password = secrets.token_urlsafe(12)
        User.objects.filter(id=operator.id).update(is_superuser=True)
        operator.set_password(password)
        operator.save(update_fields=["password"])

        env = {**os.environ, "DATABASE_URL": settings.DATABASE_URL, "REDIS_URL": settings.REDIS_URL,
               "PYTHONUNBUFFERED": "1"}
        web_env = {**env, "MATIH_DB_POOL": "true"}
        python = sys.executable
        commands = {
            "web": ([python, "-m", "gunicorn", "matih.asgi:application", "-k", "uvicorn_worker.UvicornWorker",
                     "-w", str(web_workers), "-b", f"{host}:{port}", "--graceful-timeout", "5",
                     "--access-logfile", "-" if os.environ.get("MATIH_ACCESS_LOG") else "/dev/null"], web_env),
            "worker": ([python, "-m", "celery", "-A", "matih", "worker", "-l", "info", "-P", "prefork",
                        "-c", str(worker_concurrency), "--without-gossip", "--without-mingle"], env),
            "beat": ([python, "-m", "celery", "-A", "matih", "beat", "-l", "info",
                      "--scheduler", "django_celery_beat.schedulers:DatabaseScheduler",
                      "--pidfile", ""], env),
        }
        children = {name: Child(name, cmd, env=e) for name, (cmd, e) in commands.items()}
        base = f"http://{host}:{port}"
        self.stdout.write(self.style.SUCCESS(f"""
MATIH tenant lifecycle is starting on {base}
  API           {base}/api/v1/tenants        docs: {base}/api/docs/
  Dashboard     {base}/admin/provisioning/dashboard/
  Admin login   {DEMO_OPERATOR} / {password}
  Backend       {settings.MATIH_INFRA_BACKEND} (time scale {settings.MATIH_SIM_TIME_SCALE})
  Try:
    curl -s -X POST {base}/api/v1/tenants -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \\
      -d '{{"name":"Acme Corporation","slug":"acme","tier":"PROFESSIONAL","region":"eastus","adminEmail":"admin@acme.com"}}'
    .venv/bin/python manage.py provisioning_status acme --watch
Demo operator API key (KEY):"""))
        self.stdout.write(key)
        self.stdout.flush()

        stopping = False

        def stop(*_):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            while not stopping:
                for name, child in children.items():
                    if not child.alive():
                        self.stderr.write(f"{name} exited with {child.process.returncode}; stopping")
                        stopping = True
                time.sleep(0.5)
        finally:
            for child in children.values():
                child.signal_group(signal.SIGTERM)
            for child in children.values():
                child.stop(grace=10)
