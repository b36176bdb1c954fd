"""WebSocket paths through the ASGI server as in production: the tenant's socket answers without its
trailing slash and with an upper-case id; a path that matches no route is refused at the handshake,
never with a 500 or a traceback in the server's log."""
from __future__ import annotations

import asyncio
import json

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from .helpers import quiet_tenant

pytestmark = pytest.mark.django_db(transaction=True)


async def first_message(url: str) -> dict:
    async with websockets.connect(url, open_timeout=10) as socket:
        return json.loads(await asyncio.wait_for(socket.recv(), 10))


async def handshake_status(url: str) -> int:
    try:
        async with websockets.connect(url, open_timeout=10):
            return 101
    except InvalidStatus as refused:
        return refused.response.status_code


@pytest.mark.parametrize("spelling", ["no-slash", "upper-case-id", "upper-case-id-no-slash", "canonical"])
def test_the_tenant_socket_answers_in_every_spelling(asgi_server, spelling):
    tenant, _, key = quiet_tenant()
    tenant_id = str(tenant.id).upper() if spelling.startswith("upper") else str(tenant.id)
    slash = "" if spelling.endswith("no-slash") else "/"
    url = asgi_server.url.replace("http", "ws") + f"/ws/tenants/{tenant_id}/provisioning{slash}?token={key}"

    message = asyncio.run(first_message(url))

    assert message["type"] == "provisioning.status"
    assert message["data"]["tenantId"] == str(tenant.id)


@pytest.mark.parametrize("unknown", [
    "/ws/", "/ws/nothing-here", "/ws/tenants/not-a-uuid/provisioning/", "/ws/tenants/provisioning",
    "/elsewhere", "/ws/provisioning/extra/",
])
def test_an_unknown_socket_path_is_refused_at_the_handshake_without_a_500(asgi_server, operator_key, unknown):
    log_before = len(asgi_server.log())
    url = asgi_server.url.replace("http", "ws") + f"{unknown}?token={operator_key}"

    status = asyncio.run(handshake_status(url))

    assert status == 403
    logged = asgi_server.log()[log_before:]
    assert "Traceback" not in logged and "No route found" not in logged, logged[-2000:]
