"""The broker's transport: kombu's Redis transport, with one Redis client per channel.

kombu's Redis channel builds a new `redis.Redis` client for every message it sends
(`Channel._put` -> `conn_or_acquire` -> `_create_client`), and redis-py 8's constructor fills
a table of about 170 response callbacks each time: a fifth of the CPU of publishing a
canvas, paid by every registration in the web process and by every hop of a chain in the
worker. The client is only a handle on the channel's connection pool (thread-safe: each
command borrows a connection), so one per channel does the same work. When kombu replaces
the channel's pool (after a connection error), the next send makes a client on the new pool.

Used when the broker is Redis (matih.settings: CELERY_BROKER_TRANSPORT); everything else is
kombu's own.
"""
from __future__ import annotations

from contextlib import contextmanager

from kombu.transport import redis


class Channel(redis.Channel):
    _matih_client = None

    @contextmanager
    def conn_or_acquire(self, client=None):
        if client:
            yield client
            return
        cached = self._matih_client
        if cached is None or cached.connection_pool is not self.pool:
            cached = self._matih_client = self._create_client()
        yield cached


class Transport(redis.Transport):
    Channel = Channel
