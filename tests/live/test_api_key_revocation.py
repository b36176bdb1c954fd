"""A key revoked through the API is refused at once everywhere: REST, the WebSocket and the SSE stream,
through the ASGI server as in production."""
from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import websockets

from iam.models import Membership, Role, User
from iam.services import default_roles_create

from .helpers import quiet_tenant

pytestmark = pytest.mark.django_db(transaction=True)


async def socket_answer(url: str) -> tuple[str, object]:
    """("message", first message) or ("closed", close code)."""
    async with websockets.connect(url, open_timeout=10) as socket:
        try:
            return "message", json.loads(await asyncio.wait_for(socket.recv(), 10))
        except websockets.ConnectionClosed as closed:
            return "closed", closed.rcvd.code if closed.rcvd else None


def first_event_status(url: str, key: str) -> tuple[int, str]:
    with httpx.stream("GET", url, headers={"Authorization": f"Bearer {key}"}, timeout=10) as response:
        if response.status_code != 200:
            response.read()
            return response.status_code, response.text
        for line in response.iter_lines():
            if line.startswith("data: "):
                return 200, line
    raise AssertionError("the stream ended without an event")


def test_a_key_revoked_through_the_api_is_refused_on_rest_websocket_and_sse(asgi_server, operator_key):
    tenant, _, _ = quiet_tenant()
    admin_role = default_roles_create(tenant=tenant)[Role.ADMIN]
    Membership.objects.create(user=User.objects.get(email=tenant.admin_email), tenant=tenant, role=admin_role)
    api = httpx.Client(base_url=asgi_server.url, headers={"Authorization": f"Bearer {operator_key}"}, timeout=10)
    issued = api.post(f"/api/v1/tenants/{tenant.id}/api-keys", json={"name": "dashboard-tv"})
    assert issued.status_code == 201, issued.text
    key = issued.json()["key"]
    ws_url = asgi_server.url.replace("http", "ws") + f"/ws/tenants/{tenant.id}/provisioning/?token={key}"
    sse_url = f"{asgi_server.url}/api/v1/tenants/{tenant.id}/provisioning/status/stream"
    rest_url = f"{asgi_server.url}/api/v1/tenants/{tenant.id}"
    kind, message = asyncio.run(socket_answer(ws_url))
    assert kind == "message" and message["data"]["tenantId"] == str(tenant.id)
    assert first_event_status(sse_url, key)[0] == 200
    assert httpx.get(rest_url, headers={"Authorization": f"Bearer {key}"}).status_code == 200

    assert api.delete(f"/api/v1/tenants/{tenant.id}/api-keys/{issued.json()['id']}").status_code == 204

    assert httpx.get(rest_url, headers={"Authorization": f"Bearer {key}"}).status_code == 401
    assert asyncio.run(socket_answer(ws_url)) == ("closed", 4401)
    status, body = first_event_status(sse_url, key)
    assert status == 401 and json.loads(body)["error"] == "unauthenticated"
    assert key not in asgi_server.log()


def test_connections_open_when_their_key_is_revoked_close_at_once(asgi_server, operator_key):
    """Not at the next key check (every 30 s): the revocation's hint reaches every server process."""
    import threading
    import time

    tenant, _, _ = quiet_tenant()
    admin_role = default_roles_create(tenant=tenant)[Role.ADMIN]
    Membership.objects.create(user=User.objects.get(email=tenant.admin_email), tenant=tenant, role=admin_role)
    api = httpx.Client(base_url=asgi_server.url, headers={"Authorization": f"Bearer {operator_key}"}, timeout=10)
    issued = api.post(f"/api/v1/tenants/{tenant.id}/api-keys", json={"name": "wallboard"}).json()
    key = issued["key"]
    ws_url = asgi_server.url.replace("http", "ws") + f"/ws/tenants/{tenant.id}/provisioning/?token={key}"
    sse_url = f"{asgi_server.url}/api/v1/tenants/{tenant.id}/provisioning/status/stream"
    ended: dict = {}

    def read_stream() -> None:
        with httpx.stream("GET", sse_url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as response:
            for _ in response.iter_lines():
                pass
        ended["sse"] = time.monotonic()

    async def watch_socket() -> None:
        async with websockets.connect(ws_url, open_timeout=10) as socket:
            await asyncio.wait_for(socket.recv(), 10)  # the status on connect
            ready.set()
            try:
                async with asyncio.timeout(20):
                    while True:
                        await socket.recv()
            except websockets.ConnectionClosed as closed:
                ended["ws"] = (time.monotonic(), closed.rcvd.code if closed.rcvd else None)

    ready = threading.Event()
    reader = threading.Thread(target=read_stream, daemon=True)
    reader.start()
    socket_thread = threading.Thread(target=lambda: asyncio.run(watch_socket()), daemon=True)
    socket_thread.start()
    assert ready.wait(15)
    time.sleep(0.5)  # the stream is open too
    revoked_at = time.monotonic()
    assert api.delete(f"/api/v1/tenants/{tenant.id}/api-keys/{issued['id']}").status_code == 204
    socket_thread.join(15)
    reader.join(15)
    at, code = ended["ws"]
    assert code == 4401 and at - revoked_at < 5, (code, at - revoked_at)
    assert ended["sse"] - revoked_at < 5, ended["sse"] - revoked_at
