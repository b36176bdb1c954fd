"""The process's hub: one subscription to the status hints per server process, fanned out
to its live connections (WebSocket and SSE), and the watch that closes connections whose key
was revoked. See Hub's docstring for why one subscription, not one per connection."""
from __future__ import annotations

import asyncio
import logging
import time
import weakref
from typing import Protocol

from channels.db import database_sync_to_async
from channels.layers import DEFAULT_CHANNEL_LAYER, channel_layers, get_channel_layer
from channels_redis.core import RedisChannelLayer

from iam.models import ApiKey
from provisioning.live.publish import DASHBOARD_GROUP, KEYS_GROUP, hints_of, tenant_group
from provisioning.live.snapshot import Snapshot, is_newer, shared_reader

log = logging.getLogger("matih.live")

# --- the process's hub ------------------------------------------------------------------------------------


class Subscriber(Protocol):
    def offer(self, snapshot: Snapshot | None) -> None:
        """Take a status read after a hint (None: the tenant is gone); never blocks."""


TENANTS, DASHBOARD, KEYS = "tenants", "dashboard", "keys"
MEMBERSHIP_REFRESH_SECONDS = 3600.0  # channels-redis forgets group members after a day
HINT_BATCH = 100


class Hub:
    """This process's subscription to the hints, fanned out to its live connections.

    1. One channel-layer channel for the tenant groups (a group is joined when the
       first connection of its tenant arrives here, left when the last one goes)
       and one for the dashboard's group, on a layer instance of the hub's own,
       drained by one task in batches (see _drain).
    2. Hints for one tenant that arrive while its status is being read collapse
       into the latest. A hint is answered by a read that began after it arrived,
       whatever version it names (a hint may name an older version than the one
       its commit made), shared by all who wait (SnapshotReader), and offered to every
       subscriber of the tenant in this process, which sends it if it is newer
       than what it sent, from its own task, so a slow client holds up no one.

    The alternative, a channel and a layer receive per connection, is what
    Channels consumers do by default: channels-redis then hands each message from
    one waiting receiver to the next, and with a few hundred connections per
    process hints waited 100-200 ms before any handler ran (bench/ws_fanout.py).
    """

    def __init__(self, layer):
        self.layer = layer
        self._channels: dict[str, str] = {}
        self._tasks: list[asyncio.Task] = []
        self._subscribers: dict[tuple[str, str], set[Subscriber]] = {}
        self._joined: set[str] = set()
        self._group_locks: dict[str, asyncio.Lock] = {}
        self._pending: dict[tuple[str, str], tuple[dict, float]] = {}
        self._fanning: dict[tuple[str, str], asyncio.Task] = {}

    # subscriptions

    async def subscribe_tenant(self, tenant_id: str, subscriber: Subscriber) -> None:
        await self._subscribe(TENANTS, tenant_id, tenant_group(tenant_id), subscriber)

    async def unsubscribe_tenant(self, tenant_id: str, subscriber: Subscriber) -> None:
        await self._unsubscribe(TENANTS, tenant_id, tenant_group(tenant_id), subscriber)

    async def subscribe_dashboard(self, subscriber: Subscriber) -> None:
        await self._subscribe(DASHBOARD, "*", DASHBOARD_GROUP, subscriber)

    async def unsubscribe_dashboard(self, subscriber: Subscriber) -> None:
        await self._unsubscribe(DASHBOARD, "*", DASHBOARD_GROUP, subscriber)

    def subscriber_count(self) -> int:
        return sum(len(subscribers) for subscribers in self._subscribers.values())

    async def _subscribe(self, kind: str, key: str, group: str, subscriber: Subscriber) -> None:
        channel = await self._channel(kind)
        async with self._group_lock(group):
            self._subscribers.setdefault((kind, key), set()).add(subscriber)
            if group not in self._joined:
                await self.layer.group_add(group, channel)  # joined before the caller reads its snapshot
                self._joined.add(group)

    async def _unsubscribe(self, kind: str, key: str, group: str, subscriber: Subscriber) -> None:
        async with self._group_lock(group):
            subscribers = self._subscribers.get((kind, key))
            if subscribers is None:
                return
            subscribers.discard(subscriber)
            if subscribers:
                return
            del self._subscribers[(kind, key)]
            if group in self._joined:
                self._joined.discard(group)
                try:
                    await self.layer.group_discard(group, self._channels[kind])
                except Exception:  # the membership expires on its own; stray hints find no subscriber
                    log.warning("could not leave %s", group, exc_info=True)

    def _group_lock(self, group: str) -> asyncio.Lock:
        lock = self._group_locks.get(group)
        if lock is None:
            lock = self._group_locks[group] = asyncio.Lock()
        return lock

    async def _channel(self, kind: str) -> str:
        channel = self._channels.get(kind)
        if channel is None:
            # The default prefix: channels-redis keeps every process-local channel of a layer
            # in one Redis key per prefix, and its receive lock assumes there is only one.
            channel = await self.layer.new_channel()
            if kind in self._channels:  # another subscriber made it meanwhile
                return self._channels[kind]
            self._channels[kind] = channel
            if isinstance(self.layer, RedisChannelLayer):
                if not self._tasks:
                    self._tasks.append(asyncio.create_task(self._drain(), name="live-hub"))
            else:
                self._tasks.append(asyncio.create_task(self._read(kind, channel), name=f"live-hub-{kind}"))
            if not any(task.get_name() == "live-hub-refresh" for task in self._tasks):
                self._tasks.append(asyncio.create_task(self._refresh_memberships(), name="live-hub-refresh"))
        return channel

    # hints

    async def _drain(self) -> None:
        """Take the hints off this hub's Redis key: block for the first, then up to 100 more at once.

        channels-redis's own receive costs four round trips per message, one message
        at a time, to give at-least-once delivery; hints need none of it (the next
        hint or a reconnect repairs a lost one). Ten tenants moving in step
        queued their hints behind each other for 100-180 ms that way; a batch
        takes them all in two round trips. The hub's layer is its own instance
        (its own key), so nobody else in the process receives from that key.
        """
        layer = self.layer
        local = layer.non_local_name(await layer.new_channel())
        key = layer.prefix + local
        while True:
            try:
                connection = layer.connection(layer.consistent_hash(local))
                first = await connection.bzpopmin(key, timeout=layer.brpop_timeout)
                if first is None:
                    continue
                batch = [first[1]] + [member for member, _ in await connection.zpopmin(key, HINT_BATCH)]
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("live hints: Redis failed; retrying in 1 s", exc_info=True)
                await asyncio.sleep(1)
                continue
            for raw in batch:
                try:
                    hint = layer.deserialize(raw)
                except Exception:
                    log.warning("live hints: a message could not be read", exc_info=True)
                    continue
                targets = hint.pop("__asgi_channel__", None)
                targets = targets if isinstance(targets, list) else [targets]
                for kind, channel in self._channels.items():
                    if channel in targets:
                        self._received(kind, hint)

    async def _read(self, kind: str, channel: str) -> None:
        """Any other channel layer: its own receive."""
        while True:
            try:
                hint = await self.layer.receive(channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("live hints: the channel layer failed; retrying in 1 s", exc_info=True)
                await asyncio.sleep(1)
                continue
            self._received(kind, hint)

    def _received(self, kind: str, message: dict) -> None:
        if kind == KEYS:
            key_watch().revoked(message.get("keyIds") or [])
            return
        for one in hints_of(message):
            if one.get("tenantId"):
                self._hinted(kind, str(one["tenantId"]), one)

    async def join_keys(self) -> None:
        """Hear of revoked keys (every process with a live connection does): they close at once."""
        if self.layer is None:
            return
        channel = await self._channel(KEYS)
        async with self._group_lock(KEYS_GROUP):
            if KEYS_GROUP not in self._joined:
                await self.layer.group_add(KEYS_GROUP, channel)
                self._joined.add(KEYS_GROUP)

    def _hinted(self, kind: str, tenant_id: str, hint: dict) -> None:
        key = (kind, tenant_id if kind == TENANTS else "*")
        if key not in self._subscribers:
            return
        self._pending[(kind, tenant_id)] = (hint, time.monotonic())
        if (kind, tenant_id) not in self._fanning:
            self._fanning[(kind, tenant_id)] = asyncio.create_task(self._fan_out(kind, tenant_id))

    async def _fan_out(self, kind: str, tenant_id: str) -> None:
        reader = shared_reader()
        try:
            while (kind, tenant_id) in self._pending:
                hint, received = self._pending.pop((kind, tenant_id))
                try:
                    snapshot = await reader.read(tenant_id, since=received)
                except Exception:
                    log.warning("live status of tenant %s not read", tenant_id, exc_info=True)
                    continue
                if snapshot is None and kind == DASHBOARD:
                    continue
                for subscriber in list(self._subscribers.get((kind, tenant_id if kind == TENANTS else "*"), ())):
                    subscriber.offer(snapshot)
        finally:
            self._fanning.pop((kind, tenant_id), None)

    async def _refresh_memberships(self) -> None:
        while True:
            await asyncio.sleep(MEMBERSHIP_REFRESH_SECONDS)
            for group in list(self._joined):
                kind = DASHBOARD if group == DASHBOARD_GROUP else KEYS if group == KEYS_GROUP else TENANTS
                try:
                    await self.layer.group_add(group, self._channels[kind])
                except Exception:
                    log.warning("could not renew %s", group, exc_info=True)


class KeyWatch:
    """Closes live connections whose API key was revoked (or whose user was deactivated) after they connected.

    At once when the revocation's hint arrives (the process's hub hears of every revoked key);
    and, for what no hint announces (a user deactivated, a hint lost), one query per process
    every `interval` seconds for all the keys in use, instead of one per connection.
    """

    def __init__(self, interval: float):
        self.interval = interval
        self._watched: dict[object, set] = {}  # api key id -> connections (each with .key_revoked())
        self._task: asyncio.Task | None = None

    def watch(self, api_key_id, connection) -> None:
        self._watched.setdefault(api_key_id, set()).add(connection)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="live-key-watch")
            asyncio.create_task(hub().join_keys(), name="live-key-hints")  # revocations close at once

    def forget(self, api_key_id, connection) -> None:
        connections = self._watched.get(api_key_id)
        if connections is not None:
            connections.discard(connection)
            if not connections:
                del self._watched[api_key_id]

    def revoked(self, key_ids) -> None:
        """A revocation hint (provisioning.live.publish.publish_keys_revoked): close their connections now."""
        for key_id in key_ids:
            for connection in list(self._watched.pop(_as_uuid(key_id), ())):
                connection.key_revoked()

    async def _run(self) -> None:
        while self._watched:
            await asyncio.sleep(self.interval)
            try:
                dead = await database_sync_to_async(dead_keys)(list(self._watched))
            except Exception:
                log.warning("could not check the live connections' keys", exc_info=True)
                continue
            for key_id in dead:
                for connection in list(self._watched.pop(key_id, ())):
                    connection.key_revoked()


def _as_uuid(value):
    import uuid

    try:
        return uuid.UUID(str(value))
    except ValueError:
        return value


def dead_keys(key_ids: list) -> set:
    """Of these API key ids, those that no longer authenticate (revoked, user inactive, deleted)."""
    live = set(ApiKey.objects.filter(id__in=key_ids, revoked_at__isnull=True, user__is_active=True)
               .values_list("id", flat=True))
    return set(key_ids) - live


KEY_CHECK_SECONDS = 30.0
_key_watches: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def key_watch() -> KeyWatch:
    loop = asyncio.get_running_loop()
    found = _key_watches.get(loop)
    if found is None:
        found = _key_watches[loop] = KeyWatch(KEY_CHECK_SECONDS)
    return found


_hubs: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def hub() -> Hub:
    """The hub of the running event loop (one per server process), on a channel layer of its own."""
    loop = asyncio.get_running_loop()
    found = _hubs.get(loop)
    if found is None:
        layer = channel_layers.make_backend(DEFAULT_CHANNEL_LAYER) if get_channel_layer() is not None else None
        found = _hubs[loop] = Hub(layer)
    return found


class LatestSnapshot:
    """A subscriber for a stream that pulls: it keeps the newest status offered and wakes the puller."""

    def __init__(self):
        self.snapshot: Snapshot | None = None
        self.gone = False
        self.changed = asyncio.Event()

    def offer(self, snapshot: Snapshot | None) -> None:
        if snapshot is None:
            self.gone = True
        elif self.snapshot is None or is_newer(snapshot.mark, self.snapshot.mark):
            self.snapshot = snapshot
        self.changed.set()

    def key_revoked(self) -> None:
        """The key that opened the stream no longer authenticates: the stream ends."""
        self.gone = True
        self.changed.set()
