"""The job state machine: the allowed transitions (one table), the compare-and-swap
that performs them, the event each one records, and the retry backoff.

Every change to a job goes through `transition()` or `record()`: one UPDATE that
checks the expected status, bumps `version` and returns it; the event of the
change is stored with `seq = version`, in the same transaction. A caller whose
UPDATE matched no row lost a race (another worker got there first) and does
nothing more.
"""
from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Iterable

from django.conf import settings
from django.db import connection, transaction
from psycopg.types.json import Jsonb

from provisioning.models import JobStatus, ProvisioningEvent, ProvisioningJob

S = JobStatus

ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    S.PENDING: frozenset({S.RUNNING, S.CANCELLING}),
    S.RUNNING: frozenset({S.RUNNING, S.RETRY_SCHEDULED, S.ROLLING_BACK, S.CANCELLING, S.COMPLETED}),
    S.RETRY_SCHEDULED: frozenset({S.RUNNING, S.ROLLING_BACK, S.CANCELLING}),
    S.ROLLING_BACK: frozenset({S.ROLLING_BACK, S.FAILED}),
    S.CANCELLING: frozenset({S.CANCELLING, S.CANCELLED}),
    S.COMPLETED: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELLED: frozenset(),
}

JOB_TABLE = ProvisioningJob._meta.db_table


class IllegalTransition(Exception):
    pass


def _assignments(fields: dict) -> tuple[list[str], list]:
    parts, params = [], []
    for column, value in fields.items():
        if column == "context_merge":
            parts.append("context = context || %s")
            params.append(Jsonb(value))
        elif isinstance(value, dict):
            parts.append(f"{column} = %s")
            params.append(Jsonb(value))
        else:
            parts.append(f"{column} = %s")
            params.append(value)
    return parts, params


def _update(job_id, where_status: list[str] | None, fields: dict) -> tuple[int, str] | None:
    parts, params = _assignments(fields)
    parts += ["version = version + 1", "updated_at = now()"]
    sql = f"UPDATE {JOB_TABLE} SET {', '.join(parts)} WHERE id = %s"
    params.append(job_id)
    if where_status is not None:
        sql += " AND status = ANY(%s)"
        params.append(list(where_status))
    sql += " RETURNING version, status"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return (row[0], row[1]) if row else None


def _event(job_id, seq: int, kind: str, step: str, message: str, data: dict | None) -> None:
    ProvisioningEvent.objects.create(job_id=job_id, seq=seq, kind=kind, step=step, message=message, data=data or {})


def transition(job_id, *, from_: Iterable[str], to: str, event: str, step: str = "", message: str = "",
               data: dict | None = None, **fields) -> int | None:
    """Move the job from one of `from_` to `to`; the new version, or None if it was not in `from_`."""
    from_ = list(from_)
    for status in from_:
        if to not in ALLOWED_TRANSITIONS[status]:
            raise IllegalTransition(f"{status} -> {to}")
    assert transaction.get_connection().in_atomic_block, "transitions run inside a transaction"
    result = _update(job_id, from_, {"status": to, **fields})
    if result is None:
        return None
    _event(job_id, result[0], event, step, message, data)
    return result[0]


def record(job_id, *, event: str, step: str = "", message: str = "", data: dict | None = None,
           **fields) -> tuple[int, str] | None:
    """Record an event (and field changes) without changing the status: (version, status)."""
    assert transaction.get_connection().in_atomic_block, "events are recorded inside a transaction"
    result = _update(job_id, None, fields)
    if result is None:
        return None
    _event(job_id, result[0], event, step, message, data)
    return result


def backoff_seconds(retry_count: int, retry_after: float | None = None) -> float:
    """The wait before retry number `retry_count + 1`: the configured ladder, with jitter.

    A provider's Retry-After wins when it asks for longer.
    """
    ladder = settings.MATIH_RETRY_BACKOFF
    base = ladder[min(retry_count, len(ladder) - 1)]
    jitter = settings.MATIH_RETRY_JITTER
    delay = base * (1 + random.uniform(-jitter, jitter)) if jitter else base
    if retry_after is not None:
        delay = max(delay, retry_after)
    return max(delay, 0.0)


def lease_until(now: datetime, extra_seconds: float = 0) -> datetime:
    return now + timedelta(seconds=settings.MATIH_STEP_LEASE + extra_seconds)
