"""The broker's transport: kombu's Redis transport, with one Redis client per channel; and
canvases sent again as Celery wrote them the first time (prepared messages).

kombu's Redis channel builds a new `redis.Redis` client for every message it sends
(`Channel._put` -> `conn_or_acquire` -> `_create_client`), and redis-py 8's constructor fills
a table of about 170 response callbacks each time: a fifth of the CPU of publishing a
canvas, paid by every registration in the web process and by every hop of a chain in the
worker. The client is only a handle on the channel's connection pool (thread-safe: each
command borrows a connection), so one per channel does the same work. When kombu replaces
the channel's pool (after a connection error), the next send makes a client on the new pool.

Used when the broker is Redis (matih.settings: CELERY_BROKER_TRANSPORT); everything else is
kombu's own.

Prepared messages (`PreparedMessages`): a registration sends its job's canvas, a message whose
shape depends only on the plan (the task, the phases, the options); only the job's id and the
message's own ids change. Building it goes through Celery's routing, its protocol-2 message,
kombu's producer, serializer and envelope: about 0.4 ms of CPU, an eighth of a registration's.
So the first message of each shape (per process) is written by Celery itself, down to the
dict kombu would push, with marker values for the job and the ids; the shape is kept as text
with the markers, and each later message of that shape is the same text with the job's id, a
new task id, a new delivery tag and the sending thread's reply-to put in, pushed with one
LPUSH: the same bytes Celery would have pushed. Only for what that holds for: no countdown or
ETA, no publish signal receivers, no sent events, no eager mode, no key prefix, priority 0;
anything else, or a failed push, goes through Celery (`apply_async`), retries included.
"""
from __future__ import annotations

import base64
import os
import re
import threading
import uuid
from contextlib import contextmanager
from typing import Callable

from kombu.transport import redis
from kombu.utils.json import dumps, loads


class Channel(redis.Channel):
    _matih_client = None
    _matih_capture: list | None = None  # set: the channel records what it would push, and pushes nothing

    @contextmanager
    def conn_or_acquire(self, client=None):
        if client:
            yield client
            return
        cached = self._matih_client
        if cached is None or cached.connection_pool is not self.pool:
            cached = self._matih_client = self._create_client()
        yield cached

    def _put(self, queue, message, **kwargs):
        if self._matih_capture is not None:
            self._matih_capture.append((self._q_for_pri(queue, self._get_message_priority(message, reverse=False)),
                                        message))
            return
        super()._put(queue, message, **kwargs)


class Transport(redis.Transport):
    Channel = Channel


# --- prepared messages -----------------------------------------------------------------------------

_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class _Shape:
    """One message shape: the envelope and the body as text, with marker values to replace."""

    def __init__(self, queue: str, envelope: str, body: str, markers: dict[str, str]):
        self.queue, self.envelope, self.body, self.markers = queue, envelope, body, markers

    def render(self, values: dict[str, str]) -> str:
        """The message with each marker replaced by its value (values: job, task, tag, reply, and the
        shape's other ids). The body goes in last, encoded: no marker can be inside its base64."""
        body, envelope = self.body, self.envelope
        for name, marker in self.markers.items():
            if name != "body":
                body, envelope = body.replace(marker, values[name]), envelope.replace(marker, values[name])
        return envelope.replace(self.markers["body"], base64.b64encode(body.encode()).decode())


class PreparedMessages:
    """Send messages of a few shapes, each as Celery wrote the first of its shape (see the module)."""

    def __init__(self, app):
        self.app = app
        self._shapes: dict[tuple, _Shape | None] = {}
        self._lock = threading.Lock()
        self._client = None  # a redis.Redis on the pool of a channel of `_connection`
        self._connection = None
        self._pid = None
        self._configured: bool | None = None

    def usable(self) -> bool:
        """Whether this path writes what Celery would: asked before every message (a signal receiver
        may be connected at any time); the configuration and the transport are read once."""
        from celery import signals

        if signals.before_task_publish.receivers or signals.after_task_publish.receivers:
            return False
        if self._configured is None:
            conf = self.app.conf
            with self.app.connection_for_write() as connection:  # not connected: only its transport is read
                ours = isinstance(connection.transport, Transport)
            self._configured = (ours and not conf.task_always_eager and not conf.task_send_sent_event
                                and not (conf.broker_transport_options or {}).get("global_keyprefix"))
        return self._configured

    def send(self, key: tuple, ids: dict[str, str], write: Callable) -> bool:
        """Send the message of shape `key` with these ids (the job's, and any other the shape has: the
        root's and the parent's task ids of a chain's next link); False if this path cannot (the caller
        sends it through Celery). `write(markers, producer)` sends one message of the shape through
        Celery, with markers["job"] and markers["task"] (the task id) and the other ids' markers."""
        if not all(_ID.match(value or "") for value in ids.values()):
            return False
        if self._pid != os.getpid():  # after a fork, nothing of the parent's: its pid is in `origin`
            with self._lock:
                if self._pid != os.getpid():
                    self._shapes, self._client, self._connection, self._pid = {}, None, None, os.getpid()
        if not self.usable():
            return False
        shape = self._shapes.get(key, False)
        if shape is False:
            try:
                shape = self._shapes[key] = self._capture(sorted(ids), write)
            except Exception:  # the broker is away: Celery's own path tries, with its retries
                return False
        if shape is None:
            return False
        message = shape.render({**ids, "task": str(uuid.uuid4()), "tag": str(uuid.uuid4()),
                                "reply": self.app.thread_oid})
        try:
            self._redis().lpush(shape.queue, message)
        except Exception:
            # The caller sends it through Celery, with its retries (should this push have landed
            # after all, the job gets its canvas twice: a duplicate delivery runs nothing twice).
            self._drop()
            return False
        return True

    def _drop(self) -> None:
        with self._lock:
            connection, self._client, self._connection = self._connection, None, None
        if connection is not None:
            try:
                connection.release()
            except Exception:
                pass

    def _redis(self):
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    connection = self.app.connection_for_write()
                    with connection.default_channel.conn_or_acquire() as redis_client:  # the channel's own
                        self._client = redis_client
                    self._connection = connection  # keeps the channel (and its pool) alive
                client = self._client
        return client

    def _capture(self, names: list[str], write: Callable) -> _Shape | None:
        """The shape, from one message Celery writes with marker values, captured before the push."""
        markers = {name: str(uuid.uuid4()) for name in [*names, "task", "body"]}
        with self.app.connection_for_write() as connection:
            channel = connection.channel()
            channel._matih_capture = captured = []
            try:
                with self.app.amqp.Producer(channel) as producer:
                    write(dict(markers), producer)
            finally:
                channel.close()
        if len(captured) != 1:
            return None
        queue, message = captured[0]
        properties = message.get("properties", {})
        if properties.get("body_encoding") != "base64" or properties.get("priority", 0) or \
                message.get("content-encoding") != "utf-8":
            return None
        markers["tag"], markers["reply"] = properties["delivery_tag"], properties["reply_to"]
        body = base64.b64decode(message["body"]).decode()
        envelope = dumps({**message, "body": markers["body"]})
        shape = _Shape(queue, envelope, body, markers)
        # What is replaced must be all that varies: the shape made again with the markers is the
        # message, and every id given is in it.
        again = loads(shape.render(markers))
        used = all((envelope + body).count(markers[name]) for name in [*names, "task", "tag"])
        return shape if again == message and used else None
