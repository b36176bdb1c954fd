"""Status hints for live clients, published when a job's change commits.

The worker sends a small hint ({tenantId, jobId, version, jobStatus}) to the tenant's
group and to the dashboard's group on the Channels layer; the hubs of the web processes
answer it with the status read from the database. Pushes are hints: nothing depends on one
arriving (channels-redis drops what is not delivered in time).

Sends go through one sender task on one long-lived event loop per process (a daemon
thread), never one coroutine per hint: a sweep that resumes a thousand jobs publishes a
thousand hints at once, and as many concurrent sends exhausted channels-redis's connection
pool ("MaxConnectionsError: Too many connections"). The sender takes what is pending
MATIH_HINT_COALESCE_MS after the first hint of a batch, keeps only the newest hint per job
(readers fetch the status afresh, so only the last hint of a burst matters), sends the
dashboard one message for the whole batch and each tenant's group its own, one after the other.

The window is what a push may wait (50 ms: not something a person watching sees), and what
keeps the hints of a fast job from costing more than its steps: each batch costs two
group sends (about 0.6 ms of CPU each here) on the worker's GIL, and a job at time scale 0
changes every 3 ms.
"""
from __future__ import annotations

import asyncio
import logging
import os
import threading

from channels.layers import get_channel_layer

log = logging.getLogger("matih.publish")

DASHBOARD_GROUP = "provisioning.all"
KEYS_GROUP = "matih.keys"  # every web process with a live connection hears of revoked keys here
KEYS_REVOKED = "keys.revoked"
MESSAGE_TYPE = "provisioning.changed"
DASHBOARD_BATCH = 200

_loop: asyncio.AbstractEventLoop | None = None
_loop_pid: int | None = None
_lock = threading.Lock()
_pending: dict[str, dict] = {}
_wake: asyncio.Event | None = None


def coalesce_seconds() -> float:
    from django.conf import settings

    return settings.MATIH_HINT_COALESCE_MS / 1000


def tenant_group(tenant_id) -> str:
    return f"tenant.{tenant_id}"


def hints_of(message: dict) -> list[dict]:
    """The hints a layer message carries: itself, or the batch of a dashboard message."""
    batch = message.get("hints")
    if isinstance(batch, list):
        return [hint for hint in batch if isinstance(hint, dict)]
    return [message]


def _get_loop() -> asyncio.AbstractEventLoop:
    global _loop, _loop_pid, _wake
    if _loop is not None and _loop_pid == os.getpid():
        return _loop
    with _lock:
        if _loop is None or _loop_pid != os.getpid():
            loop = asyncio.new_event_loop()
            wake = asyncio.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                loop.create_task(_sender(wake))
                loop.run_forever()

            threading.Thread(target=run, name="matih-publish", daemon=True).start()
            _pending.clear()  # a forked child starts with none of its parent's hints
            _revoked.clear()
            _loop, _loop_pid, _wake = loop, os.getpid(), wake
    return _loop


_revoked: list[str] = []


async def _sender(wake: asyncio.Event) -> None:
    while True:
        await wake.wait()
        wake.clear()
        await asyncio.sleep(coalesce_seconds())
        with _lock:
            batch = list(_pending.values())
            _pending.clear()
            revoked = list(_revoked)
            _revoked.clear()
        if revoked:
            await _send_revoked(revoked)
        if batch:
            await _send(batch)


async def _send_revoked(key_ids: list[str]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        await layer.group_send(KEYS_GROUP, {"type": KEYS_REVOKED, "keyIds": key_ids})
    except Exception:
        log.warning("key revocation hint not published (open connections close within a key check)", exc_info=True)


def publish_keys_revoked(key_ids) -> None:
    """Tell every web process these keys are revoked: their open WebSockets and event streams close now."""
    ids = [str(key_id) for key_id in key_ids]
    if not ids:
        return
    try:
        loop = _get_loop()
        with _lock:
            idle = not _pending and not _revoked
            _revoked.extend(ids)
        if idle:
            loop.call_soon_threadsafe(_wake.set)
    except Exception:
        log.warning("key revocation hint not published", exc_info=True)


async def _send(batch: list[dict]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    failures = 0
    for start in range(0, len(batch), DASHBOARD_BATCH):
        chunk = batch[start:start + DASHBOARD_BATCH]
        try:
            await layer.group_send(DASHBOARD_GROUP, {"type": MESSAGE_TYPE, "hints": chunk})
        except Exception:
            failures += 1
            log.warning("status hints not published to the dashboard", exc_info=True)
    for message in batch:
        try:
            await layer.group_send(tenant_group(message["tenantId"]), message)
        except Exception:
            failures += 1
            if failures == 1:
                log.warning("status hint not published", exc_info=True)
    if failures > 1:
        log.warning("%d status hint sends failed in a batch of %d", failures, len(batch))


def publish_change(*, tenant_id, job_id, version: int | None, status: str = "") -> None:
    """Fire and forget: never blocks or fails the caller."""
    message = {"type": MESSAGE_TYPE, "tenantId": str(tenant_id), "jobId": str(job_id),
               "version": version, "jobStatus": status}
    try:
        loop = _get_loop()
        with _lock:
            idle = not _pending and not _revoked
            _pending[str(job_id)] = message
        if idle:
            loop.call_soon_threadsafe(_wake.set)
    except Exception:
        log.warning("status hint not published", exc_info=True)


def flush(timeout: float = 5.0) -> None:
    """Wait until what was published so far has been sent (tests, and a process about to exit)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with _lock:
            if not _pending:
                break
        time.sleep(0.005)
    time.sleep(coalesce_seconds() * 2)
