"""Status hints for live clients, published when a job's change commits.

The worker sends a small hint ({jobId, version}) to the tenant's group and to
the dashboard's group on the Channels layer; consumers answer it with the
status read from the database. Pushes are hints: nothing depends on one
arriving (channels-redis drops what is not delivered in time).

Sends go through one long-lived event loop per process (a daemon thread), not
async_to_sync per call, which would open a loop and connections each time.
"""
from __future__ import annotations

import asyncio
import logging
import os
import threading

from channels.layers import get_channel_layer

log = logging.getLogger("matih.publish")

DASHBOARD_GROUP = "provisioning.all"

_loop: asyncio.AbstractEventLoop | None = None
_loop_pid: int | None = None
_lock = threading.Lock()


def tenant_group(tenant_id) -> str:
    return f"tenant.{tenant_id}"


def _get_loop() -> asyncio.AbstractEventLoop:
    global _loop, _loop_pid
    if _loop is not None and _loop_pid == os.getpid():
        return _loop
    with _lock:
        if _loop is None or _loop_pid != os.getpid():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="matih-publish", daemon=True).start()
            _loop, _loop_pid = loop, os.getpid()
    return _loop


# Hints for one job within this window are sent once, with the latest version:
# consumers read the status afresh, so only the last hint of a burst matters.
COALESCE_SECONDS = 0.01

_pending: dict[str, dict] = {}


async def _send(message: dict) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        await layer.group_send(tenant_group(message["tenantId"]), message)
        await layer.group_send(DASHBOARD_GROUP, message)
    except Exception:
        log.warning("status hint not published", exc_info=True)


def _flush(job_key: str) -> None:
    with _lock:
        message = _pending.pop(job_key, None)
    if message is not None:
        asyncio.ensure_future(_send(message))


def _schedule(job_key: str) -> None:
    _get_loop().call_later(COALESCE_SECONDS, _flush, job_key)


def publish_change(*, tenant_id, job_id, version: int | None, status: str = "") -> None:
    """Fire and forget: never blocks or fails the caller."""
    message = {"type": "provisioning.changed", "tenantId": str(tenant_id), "jobId": str(job_id),
               "version": version, "jobStatus": status}
    job_key = str(job_id)
    try:
        loop = _get_loop()
        with _lock:
            first = job_key not in _pending
            _pending[job_key] = message
        if first:
            loop.call_soon_threadsafe(_schedule, job_key)
    except Exception:
        log.warning("status hint not published", exc_info=True)
