"""Live status for WebSocket and server-sent-event clients.

The orchestrator publishes a hint when a job's change commits
({"type": "provisioning.changed", "tenantId", "jobId", "version", "jobStatus"}).
A subscriber answers it with the status read from the database through
`provisioning_status` (the one status function), and sends it only when it is
newer than the last status it sent: hints that arrive while a read is in flight
collapse into one message.

Every subscriber of a tenant in a process needs the same read after a hint, so
reads are shared: one database read per tenant and hint per process (a single
flight), and the message is encoded to JSON once. Hints reach a process once,
through its Hub, which offers each read to the process's subscribers.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from iam.auth import api_key_from_raw
from iam.selectors import is_operator_key
from iam.models import ApiKey
from provisioning.models import TERMINAL_JOB_STATUSES, ProvisioningJob
from provisioning.selectors import provisioning_status
from tenants.models import Tenant
from tenants.selectors import tenant_visible_to

log = logging.getLogger("matih.live")

MESSAGE_TYPE = "provisioning.status"
TERMINAL = frozenset(str(status) for status in TERMINAL_JOB_STATUSES)
# The dashboard's live rows: the open jobs, and those that ended this recently.
RECENTLY_ENDED = timezone.timedelta(minutes=10)
DASHBOARD_ROWS = 100
ENDED_ROWS = 50

Mark = tuple  # (jobId, version): what a status is the state of


# --- who is watching ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Viewer:
    """Who a live connection belongs to: an API key, or a logged-in staff user."""

    api_key: ApiKey | None = None
    staff_user: object | None = None

    @property
    def is_operator(self) -> bool:
        if self.api_key is not None:
            return is_operator_key(self.api_key)
        return self.staff_user is not None

    def tenant(self, tenant_id) -> Tenant | None:
        """The tenant if this viewer may see it (the REST API's scoping), else None."""
        if self.api_key is not None:
            return tenant_visible_to(self.api_key, tenant_id)
        return Tenant.objects.filter(id=tenant_id).first()


def token_of(query_string: bytes) -> str | None:
    values = parse_qs(query_string.decode("latin-1")).get("token")
    return values[-1] if values else None


def viewer_from_scope(scope) -> Viewer | None:
    """`?token=` (an API key) wins; else a logged-in, active staff user of the session; else None."""
    raw = token_of(scope.get("query_string", b""))
    if raw is not None:
        api_key = api_key_from_raw(raw)
        return Viewer(api_key=api_key) if api_key is not None else None
    user = scope.get("user")
    if user is not None and user.is_authenticated and user.is_active and user.is_staff:
        return Viewer(staff_user=user)
    return None


# --- what is sent --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """One read of a tenant's status, with its messages already encoded."""

    status: dict
    slug: str
    name: str
    started: float  # time.monotonic() when the read began

    @property
    def mark(self) -> Mark:
        return (self.status.get("jobId"), self.status.get("version"))

    @property
    def is_final(self) -> bool:
        """Nothing more will happen without someone acting: the job ended, or there is none."""
        return self.status.get("jobId") is None or self.status.get("jobStatus") in TERMINAL

    @property
    def text(self) -> str:
        """The tenant channel's message."""
        return self._encoded()[0]

    @property
    def dashboard_text(self) -> str:
        """The dashboard's message: the same, plus the tenant's slug and name for new rows."""
        return self._encoded()[1]

    def _encoded(self) -> tuple[str, str]:
        cached = self.__dict__.get("_texts")
        if cached is None:
            message = {"type": MESSAGE_TYPE, "data": self.status}
            dashboard = {**message, "tenant": {"id": self.status["tenantId"], "slug": self.slug, "name": self.name}}
            cached = (json.dumps(message, separators=(",", ":")), json.dumps(dashboard, separators=(",", ":")))
            object.__setattr__(self, "_texts", cached)
        return cached


def read_snapshot(tenant_id) -> Snapshot | None:
    """The tenant's status as of one moment.

    The status reads the tenant, its job and the steps in several queries; a
    job's completion commits the job and the tenant together. Read in one
    REPEATABLE READ transaction, so that a status never shows a COMPLETED job
    with a tenant still PROVISIONING (the hint of that commit would then find
    nothing newer to send, and the client would keep the stale tenant status).
    """
    started = time.monotonic()
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        if outermost:
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        tenant = Tenant.objects.filter(id=tenant_id).first()
        if tenant is None:
            return None
        status = provisioning_status(tenant)
    return Snapshot(status=status, slug=tenant.slug, name=tenant.name, started=started)


def hint_mark(hint: dict) -> Mark:
    return (hint.get("jobId"), hint.get("version"))


def is_newer(mark: Mark, last: Mark | None) -> bool:
    """Whether a status (or a hint) is newer than the last one sent.

    Versions count per job: a status of another job (a retry after FAILED
    starts a new one) is always news.
    """
    if last is None:
        return True
    if mark[0] != last[0]:
        return True
    return (mark[1] or 0) > (last[1] or 0)


def covers(snapshot: Snapshot, hint: dict) -> bool:
    """The snapshot shows the hinted change (or a later one)."""
    job_id, version = snapshot.mark
    return job_id is not None and job_id == hint.get("jobId") and version is not None \
        and hint.get("version") is not None and version >= hint["version"]


def dashboard_snapshots() -> list[Snapshot]:
    """The dashboard's live rows: each tenant with an open job (newest first, up to DASHBOARD_ROWS),
    then each whose job ended in the last RECENTLY_ENDED (latest first, up to ENDED_ROWS).

    A row is the tenant's status, so it shows the tenant's latest job.
    """
    terminal = list(TERMINAL)
    open_jobs = (ProvisioningJob.objects.exclude(status__in=terminal).order_by("-created_at")
                 .values_list("tenant_id", flat=True)[:DASHBOARD_ROWS])
    ended_jobs = (ProvisioningJob.objects.filter(status__in=terminal, completed_at__gte=timezone.now() - RECENTLY_ENDED)
                  .order_by("-completed_at").values_list("tenant_id", flat=True)[:ENDED_ROWS])
    seen, snapshots = set(), []
    for tenant_id in [*open_jobs, *ended_jobs]:
        if tenant_id in seen:
            continue
        seen.add(tenant_id)
        snapshot = read_snapshot(tenant_id)
        if snapshot is not None:
            snapshots.append(snapshot)
    return snapshots


# --- shared reads ---------------------------------------------------------------------------------------------


class SnapshotReader:
    """Reads of a tenant's status shared by every subscriber in this process (one event loop)."""

    def __init__(self, remember: int = 2048):
        self._in_flight: dict[str, tuple[float, asyncio.Future]] = {}
        self._recent: OrderedDict[str, Snapshot] = OrderedDict()
        self._remember = remember

    async def read(self, tenant_id: str, *, since: float, hint: dict | None = None) -> Snapshot | None:
        """A status read no earlier than `since` (a monotonic time), or one that covers `hint`.

        1. A remembered read that began after `since`, or that shows the hinted
           version, answers at once.
        2. Else join the read in flight; it answers if it qualifies the same way.
        3. Else start a read that others may join.
        A read that begins after a hint arrived sees the hinted commit: hints are
        published after commit.
        """
        while True:
            recent = self._recent.get(tenant_id)
            if recent is not None and (recent.started >= since or (hint is not None and covers(recent, hint))):
                return recent
            flight = self._in_flight.get(tenant_id)
            if flight is None:
                return await self._read(tenant_id)
            started, future = flight
            snapshot = await asyncio.shield(future)
            if snapshot is None or started >= since or (hint is not None and covers(snapshot, hint)):
                return snapshot

    async def _read(self, tenant_id: str) -> Snapshot | None:
        future = asyncio.get_running_loop().create_future()
        self._in_flight[tenant_id] = (time.monotonic(), future)
        try:
            snapshot = await database_sync_to_async(read_snapshot, thread_sensitive=not _pooled())(tenant_id)
        except BaseException as exc:
            if not future.done():
                future.set_exception(exc)
                future.exception()  # retrieved: waiters re-raise it, nobody else needs to
            raise
        finally:
            self._in_flight.pop(tenant_id, None)
        if snapshot is None:
            self._recent.pop(tenant_id, None)
        else:
            self._recent[tenant_id] = snapshot
            self._recent.move_to_end(tenant_id)
            while len(self._recent) > self._remember:
                self._recent.popitem(last=False)
        future.set_result(snapshot)
        return snapshot


def _pooled() -> bool:
    """With Django's connection pool (the ASGI server) each read borrows a pooled connection and
    returns it, so reads of different tenants run side by side in worker threads instead of
    queueing for the one thread that holds Django's thread-bound connection."""
    return bool(settings.DATABASES["default"].get("OPTIONS", {}).get("pool"))


_readers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def shared_reader() -> SnapshotReader:
    """The reader of the running event loop (futures belong to one loop)."""
    loop = asyncio.get_running_loop()
    reader = _readers.get(loop)
    if reader is None:
        reader = _readers[loop] = SnapshotReader()
    return reader
