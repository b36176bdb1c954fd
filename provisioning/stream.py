"""GET /api/v1/tenants/{id}/provisioning/status/stream: the WebSocket's messages as server-sent events.

For clients that cannot speak WebSocket. Same authentication and scoping as
the REST API (a bearer key; another tenant's id is a 404). The stream sends
the current status first, then one event per change, a comment line as a
heartbeat while nothing changes, and ends after the job's terminal status.

It is an async view so that an open stream costs the ASGI server a coroutine,
not a thread; it subscribes to the tenant's Channels group itself.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse

from iam.auth import api_key_from_raw
from provisioning.live import Snapshot, hint_mark, is_newer, shared_reader
from provisioning.publish import tenant_group
from tenants.selectors import tenant_visible_to

log = logging.getLogger("matih.stream")

HEARTBEAT_SECONDS = 15.0
RECONNECT_MILLISECONDS = 3000


def _error(code: str, detail: str, status: int, **headers) -> JsonResponse:
    response = JsonResponse({"error": code, "detail": detail}, status=status)
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


def _bearer(request: HttpRequest) -> str | None:
    scheme, _, raw = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not raw.strip():
        return None
    return raw.strip()


def _event(snapshot: Snapshot, *, first: bool = False) -> str:
    job_id, version = snapshot.mark
    retry = f"retry: {RECONNECT_MILLISECONDS}\n" if first else ""
    return f"{retry}id: {job_id or '-'}:{version or 0}\ndata: {snapshot.text}\n\n"


async def status_stream(request: HttpRequest, tenant_id) -> HttpResponse:
    if request.method != "GET":
        return _error("method_not_allowed", f'Method "{request.method}" not allowed.', 405, Allow="GET")
    raw = _bearer(request)
    api_key = await sync_to_async(api_key_from_raw)(raw) if raw else None
    if api_key is None:
        return _error("unauthenticated", "Use 'Authorization: Bearer <api key>' with a live key.", 401,
                      WWW_Authenticate="Bearer")
    tenant = await sync_to_async(tenant_visible_to)(api_key, tenant_id)
    if tenant is None:
        return _error("not_found", "No such tenant.", 404)
    response = StreamingHttpResponse(status_events(str(tenant.id)), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # a proxy must not hold events back
    return response


async def status_events(tenant_id: str, *, heartbeat: float = HEARTBEAT_SECONDS) -> AsyncIterator[str]:
    """The snapshot, then the newer statuses as hints arrive, until the job ends.

    1. Join the tenant's group on a channel of our own, then read the status:
       a change that commits after the read is hinted to us.
    2. A background task moves hints from the channel into a queue, so a
       heartbeat timeout never interrupts the layer's receive.
    3. On each hint newer than what was sent, read (shared with the other
       subscribers of this process) and send if newer; stop after a terminal status.
    """
    layer = get_channel_layer()
    channel = await layer.new_channel()
    group = tenant_group(tenant_id)
    await layer.group_add(group, channel)
    hints: asyncio.Queue = asyncio.Queue(maxsize=100)

    async def pump() -> None:
        while True:
            hint = await layer.receive(channel)
            if hints.full():
                hints.get_nowait()  # the newest hint is all that matters
            hints.put_nowait(hint)

    pumping = asyncio.create_task(pump())
    reader = shared_reader()
    try:
        snapshot = await reader.read(tenant_id, since=time.monotonic())
        if snapshot is None:
            return
        yield _event(snapshot, first=True)
        last = snapshot.mark
        while not snapshot.is_final:
            try:
                hint = await asyncio.wait_for(hints.get(), heartbeat)
            except TimeoutError:
                if pumping.done():
                    pumping.result()  # the layer failed: end the stream, the client reconnects
                yield ": heartbeat\n\n"
                continue
            if not is_newer(hint_mark(hint), last):
                continue
            snapshot = await reader.read(tenant_id, since=time.monotonic(), hint=hint)
            if snapshot is None:
                return
            if is_newer(snapshot.mark, last):
                last = snapshot.mark
                yield _event(snapshot)
    finally:
        pumping.cancel()
        try:
            await layer.group_discard(group, channel)
        except Exception:  # the stream is over either way; the membership expires
            log.warning("could not leave %s", group, exc_info=True)
