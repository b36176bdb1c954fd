"""`manage.py provisioning_status SLUG --watch` as an operator sees it: in a 60-column terminal
(a pseudo-terminal of that size) and through a pipe, following a real job run by the data
plane's worker process (tests/dataplane)."""
from __future__ import annotations

import fcntl
import io
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time

import pytest
from rich.cells import cell_len
from rich.console import Console

from provisioning.management.commands.provisioning_status import final_line, plain_line, view
from provisioning.models import JobStatus
from tests.harness import ROOT, worker_env
from tests.dataplane.helpers import register

COLUMNS = 60
# CREATE_DNS_ZONE fails for good while SETUP_DATABASE, its sibling, still runs: the job is
# ROLLING_BACK until that step finishes (about 75 s nominal x 0.05), then FAILED.
FAILING = {"faults": {"CREATE_DNS_ZONE": {"mode": "permanent"}}, "timeScale": 0.05}


class Terminal:
    """Just enough of a terminal to replay what the command wrote: text, CR, LF, cursor up, erase
    line, cursor show/hide and colours. Any other control sequence fails the test."""

    CSI = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])")

    def __init__(self, columns: int):
        self.columns = columns
        self.rows: list[list[str]] = [[]]
        self.row = self.col = 0
        self.widest = 0          # the furthest column any character reached
        self.redraws = 0         # times a drawn line was erased to be drawn again
        self.history: list[str] = []  # every line as it was before it was erased

    def feed(self, data: str) -> "Terminal":
        i = 0
        while i < len(data):
            char = data[i]
            if char == "\x1b":
                match = self.CSI.match(data, i)
                assert match, f"unexpected control sequence {data[i:i + 12]!r}"
                self._control(*match.groups())
                i = match.end()
                continue
            if char == "\r":
                self.col = 0
            elif char == "\n":
                self.row += 1
                if self.row == len(self.rows):
                    self.rows.append([])
            else:
                line = self.rows[self.row]
                line.extend(" " * (self.col - len(line)))
                line[self.col:self.col + 1] = [char]
                self.col += cell_len(char)
                self.widest = max(self.widest, self.col)
            i += 1
        return self

    def _control(self, params: str, final: str) -> None:
        if final == "m" or (params == "?25" and final in "hl"):
            return  # colours; cursor hidden or shown
        if final == "A":
            self.row = max(0, self.row - int(params or 1))
        elif final == "K" and params == "2":
            text = "".join(self.rows[self.row]).rstrip()
            if text:
                self.history.append(text)
                self.redraws += 1
            self.rows[self.row] = []
        else:
            raise AssertionError(f"unexpected control sequence ESC[{params}{final}")

    def lines(self) -> list[str]:
        return ["".join(row).rstrip() for row in self.rows]


def watch_command(slug: str) -> list[str]:
    return [sys.executable, "manage.py", "provisioning_status", slug, "--watch", "--interval", "0.1"]


def command_env() -> dict:
    env = worker_env()
    for variable in ("COLUMNS", "LINES"):  # the width must come from the terminal itself
        env.pop(variable, None)
    env["TERM"] = "xterm-256color"
    return env


def run_in_terminal(argv: list[str], columns: int, timeout: float = 120) -> tuple[str, int]:
    """Run a command on a pseudo-terminal `columns` wide; return what it wrote and its exit code."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    process = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, cwd=ROOT, env=command_env(),
                               start_new_session=True)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if select.select([master], [], [], 0.2)[0]:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the command's side closed
                    break
                if not data:
                    break
                chunks.append(data)
        else:
            process.kill()
            raise AssertionError(f"the watch did not end within {timeout} s")
    finally:
        os.close(master)
    return b"".join(chunks).decode(), process.wait(10)


def test_watch_redraws_in_place_within_the_terminal_width_and_shows_the_rollback(dataplane, operator_client):
    tenant = register(operator_client, tier="PROFESSIONAL", simulate=FAILING)
    output, code = run_in_terminal(watch_command(tenant["slug"]), COLUMNS)
    screen = Terminal(COLUMNS).feed(output)
    lines = screen.lines()

    assert code == 1  # FAILED
    assert screen.widest <= COLUMNS, f"a line {screen.widest} columns wide in a {COLUMNS}-column terminal"
    assert any("ROLLING_BACK" in line for line in screen.history), screen.history
    # Drawn again and again, the bar is on the screen once: it was redrawn, not appended.
    assert screen.redraws >= 5, output
    # The slug leads the bar line; in 60 columns it may be cut short (with "…") to keep the rest whole.
    is_bar = lambda line: line.startswith(tenant["slug"][:5]) and "%" in line  # noqa: E731
    assert sum(is_bar(line) for line in lines) == 1, lines
    bar = next(line for line in lines if is_bar(line))
    assert "FAILED" in bar and "DEPLOYING_SERVICES" in bar
    final = " ".join(line for line in lines if line).split(f"tenant {tenant['slug']}: ", 1)
    assert len(final) == 2 and final[1].startswith("FAILED (job FAILED in "), lines
    assert "CREATE_DNS_ZONE" in final[1]


def test_watch_through_a_pipe_prints_one_plain_line_per_change(dataplane, operator_client):
    tenant = register(operator_client, tier="PROFESSIONAL", simulate=FAILING)
    done = subprocess.run(watch_command(tenant["slug"]), cwd=ROOT, env=command_env(), capture_output=True,
                          text=True, timeout=120)
    lines = done.stdout.splitlines()

    assert done.returncode == 1, done.stderr
    assert "\x1b" not in done.stdout and "\r" not in done.stdout
    assert all(a != b for a, b in zip(lines, lines[1:])), "a line repeated although nothing changed"
    assert any(line.startswith(f"{tenant['slug']}: PROVISION ROLLING_BACK ") for line in lines), lines
    assert lines[-2].startswith(f"{tenant['slug']}: PROVISION FAILED ")
    assert lines[-1].startswith(f"tenant {tenant['slug']}: FAILED (job FAILED in ")


def test_watch_ends_with_the_tenant_active_when_the_job_completes(dataplane, operator_client):
    tenant = register(operator_client, tier="FREE")
    done = subprocess.run(watch_command(tenant["slug"]), cwd=ROOT, env=command_env(), capture_output=True,
                          text=True, timeout=120)
    lines = done.stdout.splitlines()

    assert done.returncode == 0, done.stderr
    assert lines[-2] == f"{tenant['slug']}: PROVISION COMPLETED 100% COMPLETED"
    assert lines[-1].startswith(f"tenant {tenant['slug']}: ACTIVE (job COMPLETED in ")


# --- the drawing itself, for every job status, at several widths ----------------------------------

def status_of(job: str | None, **fields) -> dict:
    """A status in the contract's shape (DESIGN.md section 4), as the selector returns it."""
    long_error = ("Step DEPLOY_DATA_SERVICES (DEPLOYING_SERVICES) failed: the provider said something long "
                  "and detailed about quotas, regions and what to try next; " * 3)
    status = {
        "tenantId": "00000000-0000-0000-0000-000000000001", "jobId": "00000000-0000-0000-0000-000000000002",
        "tier": "ENTERPRISE", "status": "PROVISIONING", "jobStatus": job,
        "currentPhase": "PROVISIONING_INFRASTRUCTURE", "completedPhases": [], "remainingPhases": [],
        "progress": 37, "startedAt": "2026-01-01T10:00:00Z", "estimatedCompletion": "2026-01-01T10:20:00Z",
        "completedAt": None, "retryCount": 1, "maxRetries": 3, "nextRetryAt": "2026-01-01T10:02:00Z",
        "errorMessage": long_error if job not in (None, "PENDING", "RUNNING", "COMPLETED") else None,
        "steps": [
            {"name": "TERRAFORM_APPLY", "phase": "PROVISIONING_INFRASTRUCTURE",
             "status": "COMPENSATING" if job in ("ROLLING_BACK", "CANCELLING") else "RUNNING", "attempts": 1,
             "startedAt": None, "finishedAt": None, "durationMs": None, "error": None},
            {"name": "CREATE_NAMESPACE", "phase": "CREATING_KUBERNETES_RESOURCES", "status": "COMPENSATED",
             "attempts": 1, "startedAt": None, "finishedAt": None, "durationMs": None, "error": None},
        ],
    }
    status.update(fields)
    return status


EVERY_JOB_STATUS = [*JobStatus.values, None]


@pytest.mark.parametrize("width", [40, 60, 120])
@pytest.mark.parametrize("job", EVERY_JOB_STATUS)
def test_every_status_is_drawn_within_the_width(job, width):
    console = Console(width=width, file=io.StringIO(), record=True, force_terminal=True)
    console.print(view("acme", status_of(job, kind="PROVISION")))
    drawn = console.export_text().splitlines()

    # Once the job has ended, the bar alone: the final line below it says how.
    assert len(drawn) == (1 if job in (None, "COMPLETED", "FAILED", "CANCELLED") else 2), drawn
    assert all(cell_len(line) <= width for line in drawn), drawn
    if width >= 60:
        assert f"PROVISION {job or 'NO JOB'}" in drawn[0]
    if job == "ROLLING_BACK":
        assert "undoing TERRAFORM_APPLY (1 undone)" in drawn[1]
    if job == "RETRY_SCHEDULED" and width >= 60:
        assert "retry 1/3 at " in drawn[1]


def test_a_slug_longer_than_the_terminal_is_cut_not_wrapped():
    console = Console(width=COLUMNS, file=io.StringIO(), record=True, force_terminal=True)
    console.print(view("a" * 63, status_of("RUNNING")))
    drawn = console.export_text().splitlines()
    assert len(drawn) == 2 and all(cell_len(line) <= COLUMNS for line in drawn), drawn


@pytest.mark.parametrize("job", EVERY_JOB_STATUS)
def test_the_plain_line_names_the_status_without_control_codes(job):
    line = plain_line("acme", status_of(job))
    assert line.startswith(f"acme: {job or 'NO JOB'} 37% PROVISIONING_INFRASTRUCTURE")
    assert "\x1b" not in line and "\n" not in line
    assert plain_line("acme", status_of(job, kind="SUSPEND")).startswith(f"acme: SUSPEND {job or 'NO JOB'} ")


def test_the_final_line_says_how_the_job_ended():
    from tenants.models import Tenant

    tenant = Tenant(slug="acme", status="FAILED")
    status = status_of("FAILED", completedAt="2026-01-01T10:01:30Z")
    assert final_line(tenant, status).startswith("tenant acme: FAILED (job FAILED in 90.0s) - Step DEPLOY_DATA")
