"""End to end: the ASGI server as in production, a real worker, real clients (websockets, httpx),
a tenant provisioning on the simulated cloud."""
from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import websockets

from tests.dataplane.helpers import register

from .helpers import phase_index, quiet_tenant

pytestmark = pytest.mark.django_db(transaction=True)

TERMINAL = ("COMPLETED", "FAILED", "CANCELLED")


def assert_in_phase_order(statuses: list[dict], tier: str) -> None:
    positions = [phase_index(tier, s["currentPhase"]) for s in statuses]
    assert positions == sorted(positions), f"phases out of order: {[s['currentPhase'] for s in statuses]}"
    progress = [s["progress"] for s in statuses]
    assert progress == sorted(progress), f"progress went back: {progress}"
    versions = [s["version"] for s in statuses]
    assert versions == sorted(set(versions)), f"a version was sent twice or out of order: {versions}"
    assert statuses[-1]["jobStatus"] == "COMPLETED" and statuses[-1]["currentPhase"] == "COMPLETED"
    assert statuses[-1]["status"] == "ACTIVE" and statuses[-1]["progress"] == 100


async def watch_websocket(url: str, timeout: float = 60) -> list[dict]:
    statuses = []
    async with websockets.connect(url, open_timeout=10) as socket:
        async with asyncio.timeout(timeout):
            async for raw in socket:
                message = json.loads(raw)
                assert message["type"] == "provisioning.status"
                statuses.append(message["data"])
                if message["data"]["jobStatus"] in TERMINAL:
                    return statuses
    return statuses


@pytest.mark.parametrize("tier, scale", [("FREE", 0.004), ("PROFESSIONAL", 0.003)])
def test_websocket_pushes_every_phase_in_order_until_completed(dataplane, asgi_server, operator_client, tier, scale):
    tenant = register(operator_client, tier=tier, simulate={"timeScale": scale})
    ws_url = asgi_server.url.replace("http", "ws") + f"/ws/tenants/{tenant['id']}/provisioning/"
    statuses = asyncio.run(watch_websocket(f"{ws_url}?token={tenant['adminApiKey']}"))
    assert_in_phase_order(statuses, tier)
    seen = {s["currentPhase"] for s in statuses}
    assert len(seen) >= 4, f"too few phases pushed to mean anything: {seen}"
    assert tenant["adminApiKey"] not in asgi_server.log(), "the token is never logged"


def test_dashboard_socket_through_the_server_needs_an_operator(asgi_server, operator_key):
    async def close_code(url: str) -> int | None:
        async with websockets.connect(url, open_timeout=10) as socket:
            try:
                await asyncio.wait_for(socket.recv(), 5)
            except websockets.ConnectionClosed as closed:
                return closed.rcvd.code if closed.rcvd else None
        return None

    base = asgi_server.url.replace("http", "ws")
    assert asyncio.run(close_code(f"{base}/ws/provisioning/")) == 4401
    tenant, _, key = quiet_tenant()
    assert asyncio.run(close_code(f"{base}/ws/tenants/{tenant.id}/provisioning/")) == 4401
    _, _, foreign_key = quiet_tenant()
    assert asyncio.run(close_code(f"{base}/ws/tenants/{tenant.id}/provisioning/?token={foreign_key}")) == 4404


def read_events(response: httpx.Response) -> tuple[list[dict], list[str]]:
    """Parse a text/event-stream until the server ends it: the data messages and the comment lines."""
    messages, comments, data = [], [], []
    for line in response.iter_lines():
        if line.startswith(":"):
            comments.append(line)
        elif line.startswith("data:"):
            data.append(line[5:].strip())
        elif line == "" and data:
            messages.append(json.loads("\n".join(data)))
            data = []
    return messages, comments


def test_server_sent_events_follow_the_job_and_end_after_completed(dataplane, asgi_server, operator_client):
    tenant = register(operator_client, tier="FREE", simulate={"timeScale": 0.004})
    url = f"{asgi_server.url}/api/v1/tenants/{tenant['id']}/provisioning/status/stream"
    headers = {"Authorization": f"Bearer {tenant['adminApiKey']}"}
    with httpx.stream("GET", url, headers=headers, timeout=httpx.Timeout(60, connect=10)) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        messages, _ = read_events(response)  # returns only because the server ends the stream
    assert all(m["type"] == "provisioning.status" for m in messages)
    assert_in_phase_order([m["data"] for m in messages], "FREE")
    assert len({m["data"]["currentPhase"] for m in messages}) >= 4


def test_server_sent_events_use_the_apis_authentication_and_scoping(asgi_server):
    tenant, _, key = quiet_tenant()
    _, _, foreign_key = quiet_tenant()
    url = f"{asgi_server.url}/api/v1/tenants/{tenant.id}/provisioning/status/stream"
    assert httpx.get(url, timeout=10).status_code == 401
    assert httpx.get(url, headers={"Authorization": "Bearer mk_00000000_revoked"}, timeout=10).status_code == 401
    missing = httpx.get(url, headers={"Authorization": f"Bearer {foreign_key}"}, timeout=10)
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"


def test_server_sent_events_of_a_finished_job_are_one_snapshot(asgi_server):
    tenant, job, key = quiet_tenant()
    job.status = "CANCELLED"
    job.save(update_fields=["status"])
    url = f"{asgi_server.url}/api/v1/tenants/{tenant.id}/provisioning/status/stream"
    with httpx.stream("GET", url, headers={"Authorization": f"Bearer {key}"}, timeout=10) as response:
        messages, _ = read_events(response)
    assert [m["data"]["jobStatus"] for m in messages] == ["CANCELLED"]


def test_server_sent_events_send_heartbeats_while_nothing_changes():
    """In-process: the stream's generator with a short heartbeat, on a job nobody runs."""
    from asgiref.sync import async_to_sync

    from provisioning.live.sse import status_events

    tenant, _, _ = quiet_tenant()

    async def first_three() -> list[str]:
        events = status_events(str(tenant.id), heartbeat=0.05)
        chunks = [await anext(events) for _ in range(3)]
        await events.aclose()
        return chunks

    chunks = async_to_sync(first_three)()
    assert chunks[0].startswith("retry: ") and '"jobStatus":"PENDING"' in chunks[0]
    assert chunks[1:] == [": heartbeat\n\n", ": heartbeat\n\n"]
