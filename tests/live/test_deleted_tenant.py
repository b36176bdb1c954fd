"""A DELETED tenant's keys are refused everywhere: REST, WebSocket, server-sent events; and a live
connection open when the deletion lands is closed. The ASGI server as in production, a real worker."""
from __future__ import annotations

import asyncio

import httpx
import pytest
import websockets

from provisioning.engine.sweeper import sweep
from tenants.models import Tenant
from tests.harness import wait_for
from tests.dataplane.helpers import register, terminal

pytestmark = pytest.mark.django_db(transaction=True)


async def _close_code(url: str, wait: float = 10) -> int | None:
    async with websockets.connect(url, open_timeout=10) as socket:
        try:
            async with asyncio.timeout(wait):
                while True:
                    await socket.recv()
        except websockets.ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None
        except TimeoutError:
            return None


def test_a_deleted_tenants_key_is_refused_on_rest_websocket_and_sse(dataplane, asgi_server, operator_client,
                                                                      monkeypatch):
    tenant = register(operator_client, tier="FREE")
    wait_for(lambda: terminal(tenant["id"]), timeout=60, message="provisioning")
    key, tid = tenant["adminApiKey"], tenant["id"]
    ws = asgi_server.url.replace("http", "ws") + f"/ws/tenants/{tid}/provisioning/?token={key}"
    stream = f"{asgi_server.url}/api/v1/tenants/{tid}/provisioning/status/stream"
    headers = {"Authorization": f"Bearer {key}"}
    assert httpx.get(f"{asgi_server.url}/api/v1/tenants/{tid}", headers=headers).status_code == 200
    assert operator_client.delete(f"/api/v1/tenants/{tid}", {"graceSeconds": 0}, format="json").status_code == 202
    wait_for(lambda: terminal(tid), timeout=60, message="the suspension")
    sweep()
    wait_for(lambda: Tenant.objects.get(id=tid).status == "DELETED", timeout=60, message="DELETED")

    rest = httpx.get(f"{asgi_server.url}/api/v1/tenants/{tid}", headers=headers)
    assert rest.status_code == 401 and rest.json()["error"] == "unauthenticated"
    sse = httpx.get(stream, headers=headers, timeout=10)
    assert sse.status_code == 401
    assert asyncio.run(_close_code(ws)) == 4401
