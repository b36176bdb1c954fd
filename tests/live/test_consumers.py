"""The WebSocket consumers through the whole ASGI application (Origin check, session, routing),
with Channels' communicator, the real Redis channel layer and the orchestrator's publisher."""
from __future__ import annotations

import json

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.db import transaction
from django.test import Client
from django.utils import timezone

from iam.models import ApiKey
from iam.services import operator_get_or_create
from matih.asgi import application
from provisioning.live.publish import publish_change
from provisioning.selectors import provisioning_status
from provisioning.engine.states import transition

from .helpers import quiet_tenant

pytestmark = pytest.mark.django_db(transaction=True)


def tenant_path(tenant_id, token: str | None = None) -> str:
    query = f"?token={token}" if token is not None else ""
    return f"/ws/tenants/{tenant_id}/provisioning/{query}"


async def _connect(path: str, headers: list | None = None):
    """Connect; return (accepted, close code or None, first message or None, communicator)."""
    communicator = WebsocketCommunicator(application, path, headers=headers or [])
    accepted, code = await communicator.connect(timeout=5)
    if not accepted:
        return False, code, None, communicator
    output = await communicator.receive_output(timeout=5)
    if output["type"] == "websocket.close":
        return True, output.get("code"), None, communicator
    return True, None, json.loads(output["text"]), communicator


def start(job) -> int:
    """PENDING -> RUNNING and its hint on commit, as the orchestrator does (no worker is asked to act)."""
    with transaction.atomic():
        version = transition(job.id, from_=["PENDING"], to="RUNNING", event="job.started", message="tests",
                             started_at=timezone.now())
        transaction.on_commit(lambda: publish_change(tenant_id=job.tenant_id, job_id=job.id, version=version,
                                                     status="RUNNING"))
    return version


def connect_once(path: str, headers: list | None = None):
    async def run():
        accepted, code, message, communicator = await _connect(path, headers)
        await communicator.disconnect()
        return accepted, code, message

    return async_to_sync(run)()


def test_no_token_closes_4401():
    tenant, _, _ = quiet_tenant()
    assert connect_once(tenant_path(tenant.id))[1] == 4401


def test_unknown_token_closes_4401():
    tenant, _, _ = quiet_tenant()
    assert connect_once(tenant_path(tenant.id, "mk_00000000_not-a-key"))[1] == 4401


def test_foreign_tenants_token_closes_4404():
    tenant, _, _ = quiet_tenant()
    _, _, other_key = quiet_tenant()
    assert connect_once(tenant_path(tenant.id, other_key))[1] == 4404


def test_unknown_tenant_closes_4404(operator_key):
    assert connect_once(tenant_path("6f0c1f64-0000-4000-8000-000000000000", operator_key))[1] == 4404


def test_revoked_key_closes_4401():
    tenant, _, key = quiet_tenant()
    assert connect_once(tenant_path(tenant.id, key))[2] is not None, "the key works before it is revoked"
    ApiKey.objects.filter(tenant=tenant).update(revoked_at=timezone.now())
    assert connect_once(tenant_path(tenant.id, key))[1] == 4401


def test_tenant_key_gets_its_status_on_connect():
    tenant, job, key = quiet_tenant()
    accepted, code, message = connect_once(tenant_path(tenant.id, key))
    assert accepted and code is None
    assert message["type"] == "provisioning.status"
    expected = json.loads(json.dumps(provisioning_status(tenant)))
    pushed = dict(message["data"])
    assert pushed.pop("estimatedCompletion") and expected.pop("estimatedCompletion"), "the ETA moves with time"
    assert pushed == expected
    assert message["data"]["jobId"] == str(job.id) and message["data"]["jobStatus"] == "PENDING"


def test_operator_token_sees_any_tenant(operator_key):
    tenant, _, _ = quiet_tenant()
    message = connect_once(tenant_path(tenant.id, operator_key))[2]
    assert message["data"]["tenantId"] == str(tenant.id)


def _session_cookie(user) -> list:
    client = Client()
    client.force_login(user)
    return [(b"cookie", f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
             .encode())]


def test_staff_session_needs_no_token():
    tenant, _, _ = quiet_tenant()
    staff = operator_get_or_create(email="staff@matih.test")
    message = connect_once(tenant_path(tenant.id), headers=_session_cookie(staff))[2]
    assert message["data"]["tenantId"] == str(tenant.id)


def test_session_of_a_user_who_is_not_staff_closes_4401():
    tenant, _, _ = quiet_tenant()
    from iam.models import User

    user = User.objects.get(email=tenant.admin_email)
    assert connect_once(tenant_path(tenant.id), headers=_session_cookie(user))[1] == 4401


def test_browser_from_another_site_is_refused_and_one_from_ours_connects():
    tenant, _, key = quiet_tenant()
    foreign = connect_once(tenant_path(tenant.id, key), headers=[(b"origin", b"https://evil.example")])
    assert foreign[0] is False, "the handshake is refused"
    ours = connect_once(tenant_path(tenant.id, key), headers=[(b"origin", b"http://127.0.0.1:8000")])
    assert ours[2]["type"] == "provisioning.status"


def test_a_committed_change_is_pushed_once_with_the_new_status():
    tenant, job, key = quiet_tenant()

    async def run():
        accepted, code, first, communicator = await _connect(tenant_path(tenant.id, key))
        assert first["data"]["jobStatus"] == "PENDING"
        from channels.db import database_sync_to_async

        await database_sync_to_async(start)(job)
        pushed = await communicator.receive_json_from(timeout=5)
        quiet = await communicator.receive_nothing(timeout=0.3)
        await communicator.disconnect()
        return first, pushed, quiet

    first, pushed, nothing_more = async_to_sync(run)()
    assert pushed["type"] == "provisioning.status"
    assert pushed["data"]["jobStatus"] == "RUNNING"
    assert pushed["data"]["version"] > first["data"]["version"]
    assert nothing_more, "one change, one message"


def test_stale_hints_send_nothing():
    """A hint for a version already sent (or older) is coalesced away."""
    tenant, job, key = quiet_tenant()

    async def run():
        from channels.layers import get_channel_layer

        from provisioning.live.publish import tenant_group

        _, _, first, communicator = await _connect(tenant_path(tenant.id, key))
        layer = get_channel_layer()
        stale = {"type": "provisioning.changed", "tenantId": str(tenant.id), "jobId": str(job.id),
                 "version": first["data"]["version"], "jobStatus": "PENDING"}
        await layer.group_send(tenant_group(tenant.id), stale)
        quiet = await communicator.receive_nothing(timeout=0.3)
        await communicator.disconnect()
        return quiet

    assert async_to_sync(run)()


def test_dashboard_socket_is_for_operators_only(operator_key):
    tenant, _, key = quiet_tenant()
    assert connect_once("/ws/provisioning/")[1] == 4401
    assert connect_once(f"/ws/provisioning/?token={key}")[1] == 4401, "a tenant key is not an operator's"
    message = connect_once(f"/ws/provisioning/?token={operator_key}")[2]
    assert message["type"] == "provisioning.status"
    assert message["tenant"] == {"id": str(tenant.id), "slug": tenant.slug, "name": tenant.name}


def test_dashboard_socket_pushes_every_tenants_changes():
    staff = operator_get_or_create(email="staff@matih.test")
    cookie = _session_cookie(staff)
    tenant, job, _ = quiet_tenant()

    async def run():
        from channels.db import database_sync_to_async

        communicator = WebsocketCommunicator(application, "/ws/provisioning/", headers=cookie)
        assert (await communicator.connect(timeout=5))[0]
        snapshot = await communicator.receive_json_from(timeout=5)
        other, other_job, _ = await database_sync_to_async(quiet_tenant)()
        await database_sync_to_async(start)(other_job)
        pushed = await communicator.receive_json_from(timeout=5)
        await communicator.disconnect()
        return snapshot, pushed, other

    snapshot, pushed, other = async_to_sync(run)()
    assert snapshot["data"]["tenantId"] == str(tenant.id)
    assert pushed["data"]["tenantId"] == str(other.id) and pushed["data"]["jobStatus"] == "RUNNING"
    assert pushed["tenant"]["slug"] == other.slug


def test_a_hint_naming_an_older_version_still_brings_the_newest_status():
    """Hints only say "look again": the status sent is read after the hint arrived."""
    tenant, job, key = quiet_tenant()

    async def run():
        from channels.db import database_sync_to_async
        from channels.layers import get_channel_layer

        from provisioning.live.publish import tenant_group

        _, _, first, communicator = await _connect(tenant_path(tenant.id, key))

        def start_silently():
            with transaction.atomic():
                transition(job.id, from_=["PENDING"], to="RUNNING", event="job.started", message="tests")

        await database_sync_to_async(start_silently)()
        stale = {"type": "provisioning.changed", "tenantId": str(tenant.id), "jobId": str(job.id),
                 "version": first["data"]["version"], "jobStatus": "PENDING"}
        await get_channel_layer().group_send(tenant_group(tenant.id), stale)
        pushed = await communicator.receive_json_from(timeout=5)
        await communicator.disconnect()
        return first, pushed

    first, pushed = async_to_sync(run)()
    assert pushed["data"]["jobStatus"] == "RUNNING" and pushed["data"]["version"] > first["data"]["version"]


def test_a_key_revoked_while_connected_closes_the_connection_4401(monkeypatch):
    monkeypatch.setattr("provisioning.live.hub.KEY_CHECK_SECONDS", 0.1)
    tenant, _, key = quiet_tenant()

    async def run():
        from channels.db import database_sync_to_async

        _, _, first, communicator = await _connect(tenant_path(tenant.id, key))
        await database_sync_to_async(ApiKey.objects.filter(tenant=tenant).update)(revoked_at=timezone.now())
        closed = await communicator.receive_output(timeout=5)
        await communicator.wait()
        return first, closed

    first, closed = async_to_sync(run)()
    assert first["type"] == "provisioning.status"
    assert closed == {"type": "websocket.close", "code": 4401}
