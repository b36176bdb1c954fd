"""`manage.py provisioning_status SLUG [--watch]`: a tenant's provisioning status in the terminal.

In a terminal, a progress bar (job status, progress, phase) and a line of detail (the steps
running, the ETA, the retry, what is being undone) drawn with `rich` within the terminal's
width; `--watch` redraws them in place until the job ends, then prints the final line.
Piped, one plain line (no control codes) per change. The status is the one selector's
(provisioning.selectors.provisioning_status), as the API, the WebSocket and the admin show it.
"""
from __future__ import annotations

import sys
import time
from datetime import datetime

from django.core.management.base import BaseCommand, CommandError
from django.db import close_old_connections
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from provisioning.models import TERMINAL_JOB_STATUSES
from provisioning.selectors import provisioning_status
from tenants.models import Tenant

STATUS_STYLE = {
    "PENDING": "dim", "RUNNING": "cyan", "RETRY_SCHEDULED": "yellow", "ROLLING_BACK": "magenta",
    "CANCELLING": "magenta", "COMPLETED": "green", "FAILED": "bold red", "CANCELLED": "yellow",
}


def _time(value: str | None) -> datetime | None:
    return parse_datetime(value) if value else None


def _clock(value: str | None, now: datetime | None) -> str:
    """`08:01:23`, and `(in 42s)` when `now` is given (a terminal redrawn as time passes)."""
    moment = _time(value)
    if moment is None:
        return "-"
    text = moment.astimezone().strftime("%H:%M:%S")
    if now is not None:
        seconds = max(0, round((moment - now).total_seconds()))
        text += f" (in {seconds // 60}m {seconds % 60:02d}s)" if seconds >= 60 else f" (in {seconds}s)"
    return text


def _step_names(status: dict, step_status: str) -> list[str]:
    return [step["name"] for step in status["steps"] if step["status"] == step_status]


def detail(status: dict, now: datetime | None = None) -> str:
    """What the job is doing now, in a line: steps and ETA, the retry, or what is being undone.
    Nothing once the job has ended: the final line says how."""
    job = status["jobStatus"]
    error = status["errorMessage"] or ""
    if job is None or job in TERMINAL_JOB_STATUSES:
        return ""
    if job == "PENDING":
        return "waiting for a worker"
    if job == "RUNNING":
        running = ", ".join(_step_names(status, "RUNNING")) or "-"
        return f"steps: {running}  ETA {_clock(status['estimatedCompletion'], now)}"
    if job == "RETRY_SCHEDULED":
        return (f"retry {status['retryCount']}/{status['maxRetries']} at {_clock(status['nextRetryAt'], now)}"
                + (f": {error}" if error else ""))
    if job in ("ROLLING_BACK", "CANCELLING"):
        undoing, running = _step_names(status, "COMPENSATING"), _step_names(status, "RUNNING")
        if undoing:
            doing = f"undoing {', '.join(undoing)}"
        elif running:
            doing = f"undo waits for {', '.join(running)} to finish"  # a step is never cut off midway
        else:
            doing = "undoing"
        undone = len(_step_names(status, "COMPENSATED"))
        return f"{doing} ({undone} undone)" + (f"; {error}" if error else "")
    return ""


def _job_label(status: dict) -> str:
    job = status["jobStatus"] or "NO JOB"
    return f"{status['kind']} {job}" if status.get("kind") else job


def plain_line(slug: str, status: dict) -> str:
    """One line for a pipe or a log: no control codes, no countdown (it changes only with the job)."""
    phase = status["currentPhase"] or "-"
    line = f"{slug}: {_job_label(status)} {status['progress']}% {phase}"
    more = detail(status)
    return f"{line} | {more}" if more else line


class StatusBar:
    """The bar's line, cut to the width it is drawn in, most telling first: the job status and
    the percent whole, then the phase, then the slug; the bar takes what is left (10 to 40)."""

    BAR_MIN, BAR_MAX = 10, 40

    def __init__(self, slug: str, status: dict):
        self.slug, self.status = slug, status

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        status = self.status
        label, phase = _job_label(status), status["currentPhase"] or "-"
        percent = f"{status['progress']}%"
        left = options.max_width - 4 - cell_len(label) - 4  # four gaps between five cells; "100%"
        phase_width = min(cell_len(phase), max(0, left - self.BAR_MIN))
        left -= phase_width
        slug_width = min(cell_len(self.slug), max(0, left - self.BAR_MIN))
        left -= slug_width
        bar_width = max(1, min(left, self.BAR_MAX))
        cells = [
            (slug_width, "left", self.slug),
            (cell_len(label), "left", Text(label, style=STATUS_STYLE.get(status["jobStatus"] or "", ""))),
            (bar_width, "left", ProgressBar(total=100, completed=status["progress"], width=bar_width)),
            (4, "right", percent),
            (phase_width, "left", phase),
        ]
        cells = [cell for cell in cells if cell[0] > 0]  # no room for the slug or the phase: left out
        line = Table.grid(padding=(0, 1))
        for width, justify, _ in cells:
            line.add_column(width=width, no_wrap=True, overflow="ellipsis", justify=justify)
        line.add_row(*(content for _, _, content in cells))
        yield line


def view(slug: str, status: dict, now: datetime | None = None) -> RenderableType:
    """The bar and, below it, what the job is doing; each line cut to the width, never wrapped."""
    more = detail(status, now)
    if not more:
        return StatusBar(slug, status)
    style = "dim" if status["jobStatus"] == "PENDING" else ""
    return Group(StatusBar(slug, status), Text(f"  {more}", no_wrap=True, overflow="ellipsis", style=style))


def final_line(tenant: Tenant, status: dict) -> str:
    line = f"tenant {tenant.slug}: {tenant.status}"
    started, completed = _time(status["startedAt"]), _time(status["completedAt"])
    if status["jobStatus"] in TERMINAL_JOB_STATUSES:
        took = f" in {(completed - started).total_seconds():.1f}s" if started and completed else ""
        line += f" (job {status['jobStatus']}{took})"
    return line + (f" - {status['errorMessage']}" if status["errorMessage"] else "")


class Command(BaseCommand):
    help = "Show a tenant's provisioning status; --watch follows it with a progress bar until the job ends."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--watch", action="store_true", help="Follow until the job ends.")
        parser.add_argument("--interval", type=float, default=0.5, help="Seconds between reads (default 0.5).")

    def handle(self, *args, slug: str, watch: bool, interval: float, **options):
        tenant = Tenant.objects.filter(slug=slug).first()
        if tenant is None:
            raise CommandError(f"No tenant with slug '{slug}'.")
        # Django's OutputWrapper adds a newline to every write: rich writes to the stream itself.
        console = Console(file=getattr(self.stdout, "_out", self.stdout), highlight=False)
        try:
            if console.is_interactive:
                status = self._draw(console, tenant, watch, interval)
            else:
                status = self._print_lines(console, tenant, watch, interval)
        except KeyboardInterrupt:
            raise SystemExit(130) from None
        if console.is_interactive:
            console.print(final_line(tenant, status), style=STATUS_STYLE.get(status["jobStatus"] or "", ""),
                          highlight=False, markup=False)
        else:
            console.file.write(final_line(tenant, status) + "\n")
            console.file.flush()
        if status["jobStatus"] in ("FAILED", "CANCELLED"):
            sys.exit(1)

    @staticmethod
    def _read(tenant: Tenant) -> dict:
        tenant.refresh_from_db()
        return provisioning_status(tenant)

    @staticmethod
    def _ended(status: dict) -> bool:
        return status["jobStatus"] is None or status["jobStatus"] in TERMINAL_JOB_STATUSES

    def _draw(self, console: Console, tenant: Tenant, watch: bool, interval: float) -> dict:
        """Redraw the bar in place (rich's Live) until the job ends; leave its last frame."""
        status = self._read(tenant)
        with Live(view(tenant.slug, status, timezone.now()), console=console, auto_refresh=False,
                  redirect_stdout=False, redirect_stderr=False) as live:
            while watch and not self._ended(status):
                time.sleep(interval)
                close_old_connections()
                status = self._read(tenant)
                live.update(view(tenant.slug, status, None if self._ended(status) else timezone.now()),
                            refresh=True)
        return status

    def _print_lines(self, console: Console, tenant: Tenant, watch: bool, interval: float) -> dict:
        """One plain line per change, for a pipe or a file."""
        last = None
        while True:
            status = self._read(tenant)
            line = plain_line(tenant.slug, status)
            if line != last:
                console.file.write(line + "\n")
                console.file.flush()
                last = line
            if not watch or self._ended(status):
                return status
            time.sleep(interval)
            close_old_connections()
