import shutil
import sys
import time

from django.core.management.base import BaseCommand, CommandError
from django.db import close_old_connections

from provisioning.selectors import provisioning_status
from tenants.models import Tenant

TERMINAL = {"COMPLETED", "FAILED", "CANCELLED"}


def bar(progress: int, width: int) -> str:
    filled = int(width * progress / 100)
    return "█" * filled + "░" * (width - filled)


def render(status: dict, width: int) -> str:
    job = status["jobStatus"] or "NO JOB"
    phase = status["currentPhase"] or "-"
    steps = [s for s in status["steps"] if s["status"] in ("RUNNING", "COMPENSATING")]
    running = ", ".join(s["name"] for s in steps) or "-"
    eta = status["estimatedCompletion"] or "-"
    extra = ""
    if job == "RETRY_SCHEDULED":
        extra = f"  retry {status['retryCount']}/{status['maxRetries']} at {status['nextRetryAt']}"
    return (f"{bar(status['progress'], width)} {status['progress']:3d}%  {job:<15} {phase:<30} "
            f"steps: {running}  eta: {eta}{extra}")


class Command(BaseCommand):
    help = "Show a tenant's provisioning status; --watch follows it with a progress bar until the job ends."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--watch", action="store_true", help="Follow until the job ends.")
        parser.add_argument("--interval", type=float, default=0.5)

    def handle(self, *args, slug: str, watch: bool, interval: float, **options):
        tenant = Tenant.objects.filter(slug=slug).first()
        if tenant is None:
            raise CommandError(f"No tenant with slug '{slug}'.")
        width = max(10, min(40, shutil.get_terminal_size((100, 20)).columns - 90))
        tty = sys.stdout.isatty()
        last = None
        while True:
            tenant.refresh_from_db()
            status = provisioning_status(tenant)
            line = render(status, width)
            if line != last:
                self.stdout.write(("\r\033[K" + line) if tty else line, ending="" if tty else "\n")
                self.stdout.flush()
                last = line
            if not watch or status["jobStatus"] in TERMINAL or status["jobStatus"] is None:
                break
            time.sleep(interval)
            close_old_connections()
        if tty:
            self.stdout.write("")
        self.stdout.write(f"tenant {tenant.slug}: {tenant.status}"
                          + (f" - {status['errorMessage']}" if status["errorMessage"] else ""))
        if status["jobStatus"] in ("FAILED", "CANCELLED"):
            sys.exit(1)
