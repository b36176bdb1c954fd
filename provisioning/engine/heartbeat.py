"""Lease renewal for what a worker process holds: its running steps (and their jobs), and the
state locks its steps hold (the Terraform state lock during an apply or a destroy).

One daemon thread per process (started lazily, so it lives in the prefork child that runs
the steps) renews, every third of MATIH_STEP_LEASE, the lease of each step it holds and of
their jobs, and the TTL of each lock it holds. A process that dies stops renewing; its leases
lapse and the step is taken over (redelivery or the sweeper), its locks expire.
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
_locks: dict[tuple[str, str], tuple[object, float]] = {}  # (key, owner) -> (StateLock, ttl seconds)
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


def hold_lock(lock, key: str, owner: str, ttl_seconds: float) -> None:
    """Renew `key` (held by `owner` on `lock`, a StateLock) until release_lock."""
    with _lock:
        _locks[(key, owner)] = (lock, ttl_seconds)
    _ensure_thread()


def release_lock(key: str, owner: str) -> None:
    with _lock:
        _locks.pop((key, owner), None)


def held_locks() -> list[tuple[str, str]]:
    with _lock:
        return list(_locks)


def _ensure_thread() -> None:
    global _thread, _thread_pid
    if _thread is not None and _thread_pid == os.getpid() and _thread.is_alive():
        return
    with _lock:
        if _thread is not None and _thread_pid == os.getpid() and _thread.is_alive():
            return
        if _thread_pid != os.getpid():  # a forked child holds nothing of its parent's
            _held.clear()
            _locks.clear()
        _thread = threading.Thread(target=_run, name="matih-heartbeat", daemon=True)
        _thread_pid = os.getpid()
        _thread.start()


def renew_now() -> None:
    """Renew every held lease and lock once (the thread's loop body)."""
    with _lock:
        held = dict(_held)
        locks = dict(_locks)
    if held:
        until = ExpressionWrapper(Now() + Value(timedelta(seconds=settings.MATIH_STEP_LEASE)),
                                  output_field=DateTimeField())
        StepRun.objects.filter(id__in=list(held), status__in=["RUNNING", "COMPENSATING"]) \
            .update(lease_expires_at=until)
        ProvisioningJob.objects.filter(id__in=set(held.values())).update(lease_expires_at=until)
    for (key, owner), (lock, ttl) in locks.items():
        try:
            if not lock.renew(key, owner, ttl):
                log.error("state lock %s was lost while held by %s", key, owner)
        except Exception:
            log.warning("renewing the state lock %s failed; trying again", key, exc_info=True)


def _interval() -> float:
    with _lock:
        ttls = [ttl for _, ttl in _locks.values()]
    return max(min([settings.MATIH_STEP_LEASE / 3, *[ttl / 3 for ttl in ttls]]), 0.2)


def _run() -> None:
    while True:
        _wake.wait(_interval())
        try:
            close_old_connections()
            renew_now()
        except Exception:
            log.warning("lease renewal failed; retrying", exc_info=True)
            connection.close()
