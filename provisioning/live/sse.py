"""GET /api/v1/tenants/{id}/provisioning/status/stream: the WebSocket's messages as server-sent events.

For clients that cannot speak WebSocket. Same authentication and scoping as
the REST API (a bearer key; another tenant's id is a 404). The stream sends
the current status first, then one event per change, a comment line as a
heartbeat while nothing changes, and ends after the job's terminal status.

It is an async view so that an open stream costs the ASGI server a coroutine,
not a thread; it subscribes to the tenant through the process's hub (the
channel layer group, joined once per process) like the WebSocket consumer.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse

from iam.auth import api_key_from_raw
from provisioning.live.hub import LatestSnapshot, hub, key_watch
from provisioning.live.snapshot import Snapshot, is_newer, shared_reader
from tenants.selectors import tenant_visible_to

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
    response = StreamingHttpResponse(status_events(str(tenant.id), api_key_id=api_key.id),
                                     content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # a proxy must not hold events back
    return response


async def status_events(tenant_id: str, *, heartbeat: float = HEARTBEAT_SECONDS,
                        api_key_id=None) -> AsyncIterator[str]:
    """The snapshot, then the newer statuses as they are offered, until the job ends (or the key that
    opened the stream is revoked: the process's key watch ends it).

    1. Subscribe to the tenant through the process's hub, then read the status:
       a change that commits after the read is offered to us.
    2. Wait for the newest status offered (older ones offered meanwhile are
       skipped), or send a comment line as a heartbeat when nothing came.
    3. Stop after a terminal status, or when the tenant is gone.
    """
    latest = LatestSnapshot()
    live = hub()
    await live.subscribe_tenant(tenant_id, latest)
    if api_key_id is not None:
        key_watch().watch(api_key_id, latest)
    try:
        snapshot = await shared_reader().read(tenant_id, since=time.monotonic())
        if snapshot is None:
            return
        latest.offer(snapshot)
        yield _event(snapshot, first=True)
        last = snapshot.mark
        while not snapshot.is_final:
            if not latest.gone and not is_newer(latest.snapshot.mark, last):
                latest.changed.clear()
                try:
                    await asyncio.wait_for(latest.changed.wait(), heartbeat)
                except TimeoutError:
                    yield ": heartbeat\n\n"
                    continue
            if latest.gone:
                return
            if is_newer(latest.snapshot.mark, last):
                snapshot = latest.snapshot
                last = snapshot.mark
                yield _event(snapshot)
    finally:
        if api_key_id is not None:
            key_watch().forget(api_key_id, latest)
        await live.unsubscribe_tenant(tenant_id, latest)


# --- the OpenAPI schema (a plain async view: drf-spectacular does not see it) ----------------------------------

STREAM_PATH = "/api/v1/tenants/{tenant_id}/provisioning/status/stream"


def describe_in_schema(result, generator, request, public):
    """drf-spectacular postprocessing hook: add the stream's operation, media type text/event-stream."""
    from matih.schema import error_responses

    status_ref = {"$ref": "#/components/schemas/ProvisioningStatus"}
    security = next((operation["security"] for item in result["paths"].values() for operation in item.values()
                     if isinstance(operation, dict) and "security" in operation), None)
    operation = {
        "operationId": "provisioning_status_stream",
        "summary": "The provisioning status as server-sent events",
        "description": (
            "The status now, then one event per change, until the job's terminal status; a comment line "
            f"(`: heartbeat`) every {HEARTBEAT_SECONDS:.0f} s while nothing changes. Each event's `data` is "
            "the status (as GET .../provisioning/status) as JSON, its `id` is `<jobId>:<version>`; the first "
            f"event carries `retry: {RECONNECT_MILLISECONDS}`. Same authentication and scoping as the REST API."
        ),
        "tags": ["tenants"],
        "parameters": [{"in": "path", "name": "tenant_id", "required": True,
                        "schema": {"type": "string", "format": "uuid"}}],
        "responses": {
            "200": {"description": "An event stream of statuses.", "content": {"text/event-stream": {
                "schema": {"type": "string", "description": "`id: <jobId>:<version>` and `data: <status JSON>`",
                           "x-event-data": status_ref},
                "example": 'retry: 3000\nid: 4f6c…:7\ndata: {"tenantId": "…", "status": "PROVISIONING", …}\n\n'}}},
            **error_responses([401, 404]),
        },
    }
    if security:
        operation["security"] = security
    result["paths"][STREAM_PATH] = {"get": operation}
    return result
