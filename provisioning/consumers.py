"""WebSocket consumers: one tenant's provisioning status, and the dashboard's stream of every tenant.

The contract (DESIGN.md, "WebSocket"): authenticate with `?token=` or a
logged-in staff session; close 4401 when unauthenticated and 4404 for an
unknown or foreign tenant; send the current status on connect, then one
message per change. The close codes are only visible to a client whose
connection was accepted, so the consumers accept first and then close.
"""
from __future__ import annotations

import time

from channels.db import database_sync_to_async
from channels.consumer import get_handler_name
from channels.generic.websocket import AsyncWebsocketConsumer

from provisioning.live import (
    Viewer,
    dashboard_snapshots,
    hint_mark,
    is_newer,
    shared_reader,
    viewer_from_scope,
)
from provisioning.publish import DASHBOARD_GROUP, tenant_group

UNAUTHENTICATED = 4401
NOT_FOUND = 4404


class LiveConsumer(AsyncWebsocketConsumer):
    async def dispatch(self, message: dict) -> None:
        """Channels' dispatch without its hop to the sync thread before every message.

        Channels closes stale database connections before each handler, in the one
        thread that also runs database_sync_to_async. With hundreds of subscribers
        those hops queued up behind each other on every hint (tens of ms). These
        handlers reach the database only through database_sync_to_async, which
        closes stale connections around each call itself.
        """
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)


class TenantStatusConsumer(LiveConsumer):
    """/ws/tenants/{id}/provisioning/: the tenant's status now, then on every change."""

    async def connect(self) -> None:
        await self.accept()
        self.tenant_id = str(self.scope["url_route"]["kwargs"]["tenant_id"])
        self.last = None
        viewer: Viewer | None = await database_sync_to_async(viewer_from_scope)(self.scope)
        if viewer is None:
            await self.close(code=UNAUTHENTICATED)
            return
        if await database_sync_to_async(viewer.tenant)(self.tenant_id) is None:
            await self.close(code=NOT_FOUND)
            return
        # Join before reading: a change that commits after the read is then hinted to us.
        group = tenant_group(self.tenant_id)
        await self.channel_layer.group_add(group, self.channel_name)
        self.groups = [group]  # left again by the base class on disconnect
        snapshot = await shared_reader().read(self.tenant_id, since=time.monotonic())
        await self._send(snapshot)

    async def receive(self, text_data=None, bytes_data=None) -> None:
        """Clients only listen; what they send is ignored."""

    async def provisioning_changed(self, hint: dict) -> None:
        received = time.monotonic()
        if self.last is not None and not is_newer(hint_mark(hint), self.last):
            return  # already sent: a hint that was overtaken while we read
        snapshot = await shared_reader().read(self.tenant_id, since=received, hint=hint)
        await self._send(snapshot)

    async def _send(self, snapshot) -> None:
        if snapshot is None:  # the tenant was deleted
            await self.close(code=NOT_FOUND)
            return
        if is_newer(snapshot.mark, self.last):
            self.last = snapshot.mark
            await self.send(text_data=snapshot.text)


class DashboardConsumer(LiveConsumer):
    """/ws/provisioning/: every tenant's status changes, for the admin dashboard (operators only).

    On connect it sends the status of each of the dashboard's live rows, then
    one message per change of any tenant, each with the tenant's slug and name.
    """

    async def connect(self) -> None:
        await self.accept()
        self.last: dict[str, tuple] = {}
        viewer = await database_sync_to_async(viewer_from_scope)(self.scope)
        if viewer is None or not viewer.is_operator:
            await self.close(code=UNAUTHENTICATED)
            return
        await self.channel_layer.group_add(DASHBOARD_GROUP, self.channel_name)
        self.groups = [DASHBOARD_GROUP]
        for snapshot in await database_sync_to_async(dashboard_snapshots)():
            await self._send(snapshot)

    async def receive(self, text_data=None, bytes_data=None) -> None:
        """Clients only listen; what they send is ignored."""

    async def provisioning_changed(self, hint: dict) -> None:
        received = time.monotonic()
        tenant_id = hint.get("tenantId")
        if not tenant_id:
            return
        last = self.last.get(tenant_id)
        if last is not None and not is_newer(hint_mark(hint), last):
            return
        snapshot = await shared_reader().read(tenant_id, since=received, hint=hint)
        if snapshot is not None:
            await self._send(snapshot)

    async def _send(self, snapshot) -> None:
        tenant_id = snapshot.status["tenantId"]
        if is_newer(snapshot.mark, self.last.get(tenant_id)):
            self.last[tenant_id] = snapshot.mark
            await self.send(text_data=snapshot.dashboard_text)
