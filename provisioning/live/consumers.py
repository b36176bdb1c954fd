"""WebSocket consumers: one tenant's provisioning status, and the dashboard's stream of every tenant.

The contract (DESIGN.md, "WebSocket"): authenticate with `?token=` or a
logged-in staff session; close 4401 when unauthenticated and 4404 for an
unknown or foreign tenant; send the current status on connect, then one
message per change. The close codes are only visible to a client whose
connection was accepted, so the consumers accept first and then close.

Hints do not come through a channel per connection: the process's Hub
(provisioning.live) receives them once and offers each status it reads to the
connections, which send it if it is newer than what they sent.
"""
from __future__ import annotations

import asyncio
import logging
import time

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from provisioning.live.hub import hub, key_watch
from provisioning.live.snapshot import Snapshot, Viewer, dashboard_snapshots, is_newer, shared_reader, viewer_from_scope

log = logging.getLogger("matih.live")

UNAUTHENTICATED = 4401
NOT_FOUND = 4404


class LiveConsumer(AsyncWebsocketConsumer):
    """A listener: its messages come from the hub, it has no channel-layer channel of its own."""

    channel_layer_alias = "live-connections-use-the-hub"  # not configured: Channels gives it no channel

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._outbox: dict[str, str] = {}  # what to send next, newest per tenant, in order
        self._sender: asyncio.Task | None = None
        self._key_id = None

    def watch_key(self, viewer: Viewer) -> None:
        """A key revoked while the connection is open closes it (4401) within KEY_CHECK_SECONDS."""
        if viewer.api_key is not None:
            self._key_id = viewer.api_key.id
            key_watch().watch(self._key_id, self)

    def key_revoked(self) -> None:
        self._key_id = None
        asyncio.create_task(self.close(code=UNAUTHENTICATED))

    async def receive(self, text_data=None, bytes_data=None) -> None:
        """Clients only listen; what they send is ignored."""

    def _queue(self, key: str, text: str) -> None:
        self._outbox.pop(key, None)
        self._outbox[key] = text
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send_outbox())

    async def _send_outbox(self) -> None:
        while self._outbox:
            key = next(iter(self._outbox))
            text = self._outbox.pop(key)
            try:
                await self.send(text_data=text)
            except Exception:  # the client went away; websocket_disconnect cleans up
                self._outbox.clear()
                return

    async def websocket_disconnect(self, message) -> None:
        if self._sender is not None:
            self._sender.cancel()
        if self._key_id is not None:
            key_watch().forget(self._key_id, self)
        await super().websocket_disconnect(message)


class TenantStatusConsumer(LiveConsumer):
    """/ws/tenants/{id}/provisioning/: the tenant's status now, then on every change."""

    tenant_id: str | None = None
    last: tuple | None = None
    subscribed = False

    async def connect(self) -> None:
        await self.accept()
        self.tenant_id = str(self.scope["url_route"]["kwargs"]["tenant_id"])
        viewer = await database_sync_to_async(viewer_from_scope)(self.scope)
        if viewer is None:
            await self.close(code=UNAUTHENTICATED)
            return
        if await database_sync_to_async(viewer.tenant)(self.tenant_id) is None:
            await self.close(code=NOT_FOUND)
            return
        self.watch_key(viewer)
        # Subscribe before reading: a change that commits after the read is then offered to us.
        await hub().subscribe_tenant(self.tenant_id, self)
        self.subscribed = True
        self.offer(await shared_reader().read(self.tenant_id, since=time.monotonic()))

    async def disconnect(self, code) -> None:
        if self.subscribed:
            self.subscribed = False
            await hub().unsubscribe_tenant(self.tenant_id, self)

    def offer(self, snapshot: Snapshot | None) -> None:
        if snapshot is None:  # the tenant was deleted
            asyncio.create_task(self.close(code=NOT_FOUND))
        elif is_newer(snapshot.mark, self.last):
            self.last = snapshot.mark
            self._queue(self.tenant_id, snapshot.text)


class DashboardConsumer(LiveConsumer):
    """/ws/provisioning/: every tenant's status changes, for the admin dashboard (operators only).

    On connect it sends the status of each of the dashboard's live rows, then
    one message per change of any tenant, each with the tenant's slug and name.
    """

    subscribed = False

    async def connect(self) -> None:
        await self.accept()
        self.last: dict[str, tuple] = {}
        viewer = await database_sync_to_async(viewer_from_scope)(self.scope)
        if viewer is None or not viewer.is_operator:
            await self.close(code=UNAUTHENTICATED)
            return
        self.watch_key(viewer)
        await hub().subscribe_dashboard(self)
        self.subscribed = True
        for snapshot in await database_sync_to_async(dashboard_snapshots)():
            self.offer(snapshot)

    async def disconnect(self, code) -> None:
        if self.subscribed:
            self.subscribed = False
            await hub().unsubscribe_dashboard(self)

    def offer(self, snapshot: Snapshot | None) -> None:
        if snapshot is None:
            return
        tenant_id = snapshot.status["tenantId"]
        if is_newer(snapshot.mark, self.last.get(tenant_id)):
            self.last[tenant_id] = snapshot.mark
            self._queue(tenant_id, snapshot.dashboard_text)
