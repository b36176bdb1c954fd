"""Child processes, started and stopped the one way: `make run`, the tests and the benchmarks
all run servers, workers and beat as children.

A child starts in a session of its own (so a signal reaches it and everything it forked,
e.g. gunicorn's workers or the Celery pool, and not its parent), writes its output to a log
file, is waited for until it is ready, and is stopped with TERM to its process group, then
KILL for whatever lingers.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable

import httpx


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now (the kernel's choice)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid runs (a zombie, dead but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    except OSError:
        return True  # no /proc here: kill(0) said it exists
    return state != "Z"


def children_of(pid: int) -> list[int]:
    """The direct children of a process (e.g. the prefork pool of a Celery worker)."""
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(child) for child in out.split()]


def descendants_of(pid: int) -> list[int]:
    """Every process below this one (children, their children, ...)."""
    found, todo = [], [pid]
    while todo:
        for child in children_of(todo.pop()):
            found.append(child)
            todo.append(child)
    return found


class ChildExited(RuntimeError):
    pass


class Child:
    """One child process in a session of its own, with its output in `log_path`.

    `log_path=None` leaves stdout and stderr to the parent's (the `make run` banner's case).
    """

    def __init__(self, name: str, command: list[str], *, env: dict | None = None, cwd: str | os.PathLike | None = None,
                 log_path: str | os.PathLike | None = None, append: bool = False):
        self.name = name
        self.command = command
        self.log_path = Path(log_path) if log_path is not None else None
        self._log = self.log_path.open("ab" if append else "wb") if self.log_path is not None else None
        self.process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=self._log, stderr=subprocess.STDOUT if self._log else None,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_text(self) -> str:
        if self.log_path is None:
            return ""
        if self._log is not None:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def wait_until(self, ready: Callable[[], bool], *, timeout: float = 60.0, interval: float = 0.1,
                   what: str = "ready") -> None:
        """Poll `ready()` until it is true; the child exiting first, or the time running out, raises."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.alive():
                raise ChildExited(f"{self.name} exited with {self.process.returncode} before it was {what}:\n"
                                  f"{self.log_tail()}")
            try:
                if ready():
                    return
            except Exception:  # not answering yet
                pass
            if time.monotonic() > deadline:
                raise ChildExited(f"{self.name} was not {what} after {timeout:.0f} s:\n{self.log_tail()}")
            time.sleep(interval)

    def wait_for_log(self, text: str | bytes, *, timeout: float = 60.0) -> None:
        needle = text.encode() if isinstance(text, str) else text
        self.wait_until(lambda: needle in self.log_text().encode(errors="replace"), timeout=timeout,
                        what=f"logging {needle!r}")

    def wait_for_http(self, url: str, *, timeout: float = 60.0) -> None:
        self.wait_until(lambda: httpx.get(url, timeout=1).status_code == 200, timeout=timeout, interval=0.2,
                        what=f"answering {url}")

    def signal_group(self, signum: int) -> None:
        try:
            os.killpg(self.process.pid, signum)
        except ProcessLookupError:
            pass

    def stop(self, grace: float = 10.0) -> int | None:
        """TERM to the child's process group; KILL the group if it is not gone within `grace` seconds."""
        if self.alive():
            self.signal_group(signal.SIGTERM)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        self.signal_group(signal.SIGKILL)  # anything the child left behind in its group
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            pass
        if self._log is not None:
            self._log.close()
            self._log = None
        return self.process.returncode
