"""Lease renewal for the steps a worker process is running.

One daemon thread per process (started lazily, so it lives in the prefork
child that runs the steps) renews, every third of MATIH_STEP_LEASE, the lease
of each step it holds and of their jobs. A process that dies stops renewing;
its leases lapse and the step is taken over (redelivery or the sweeper).
"""
from __future__ import annotations

import logging
import os
import threading
from datetime import timedelta

from django.conf import settings
from django.db import close_old_connections, connection
from django.db.models import DateTimeField, ExpressionWrapper, Value
from django.db.models.functions import Now

from provisioning.models import ProvisioningJob, StepRun

log = logging.getLogger("matih.heartbeat")

_lock = threading.Lock()
_held: dict[int, str] = {}  # step run id -> job id
_thread: threading.Thread | None = None
_thread_pid: int | None = None
_wake = threading.Event()


def hold(step_run_id: int, job_id: str) -> None:
    with _lock:
        _held[step_run_id] = str(job_id)
    _ensure_thread()


def release(step_run_id: int) -> None:
    with _lock:
        _held.pop(step_run_id, None)


def _ensure_thread() -> None:
    global _thread, _thread_pid
    if _thread is not None and _thread_pid == os.getpid() and _thread.is_alive():
        return
    with _lock:
        if _thread is not None and _thread_pid == os.getpid() and _thread.is_alive():
            return
        _thread = threading.Thread(target=_run, name="matih-heartbeat", daemon=True)
        _thread_pid = os.getpid()
        _thread.start()


def renew_now() -> None:
    """Renew every held lease once (the thread's loop body)."""
    with _lock:
        held = dict(_held)
    if not held:
        return
    until = ExpressionWrapper(Now() + Value(timedelta(seconds=settings.MATIH_STEP_LEASE)),
                              output_field=DateTimeField())
    StepRun.objects.filter(id__in=list(held), status__in=["RUNNING", "COMPENSATING"]).update(lease_expires_at=until)
    ProvisioningJob.objects.filter(id__in=set(held.values())).update(lease_expires_at=until)


def _run() -> None:
    interval = max(settings.MATIH_STEP_LEASE / 3, 0.2)
    while True:
        _wake.wait(interval)
        try:
            close_old_connections()
            renew_now()
        except Exception:
            log.warning("lease renewal failed; retrying", exc_info=True)
            connection.close()
