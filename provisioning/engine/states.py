"""The job state machine: the allowed transitions (one table), the compare-and-swap that
performs them, the event each one records, the retry backoff and the lease.

Every change to a job is one UPDATE that checks the expected status, bumps `version` and
returns it; the event of the change is stored with `seq = version` in the same
transaction (`event_sql` is the one way such a row is written). A caller whose UPDATE
matched no row lost a race (another worker got there first) and does nothing more.

The hot path performs transitions in hand-written SQL for speed, but never spells a
status: it renders them with `sql_transition(from_, to)`, which checks the table and
records the pair, and a test holds every job-status write in the engine's SQL to the table.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Iterable

from django.conf import settings
from django.db import connection, transaction
from psycopg.types.json import Jsonb

from provisioning.models import JobStatus, ProvisioningEvent, ProvisioningJob

S = JobStatus

ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    S.PENDING: frozenset({S.RUNNING, S.CANCELLING}),
    S.RUNNING: frozenset({S.RUNNING, S.RETRY_SCHEDULED, S.ROLLING_BACK, S.CANCELLING, S.COMPLETED, S.FAILED}),
    S.RETRY_SCHEDULED: frozenset({S.RUNNING, S.ROLLING_BACK, S.CANCELLING, S.FAILED}),
    S.ROLLING_BACK: frozenset({S.ROLLING_BACK, S.FAILED}),
    S.CANCELLING: frozenset({S.CANCELLING, S.CANCELLED}),
    S.COMPLETED: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELLED: frozenset(),
}
# RUNNING -> FAILED and RETRY_SCHEDULED -> FAILED are for forward-only phases (a deprovisioning
# whose retry budget is spent fails without rolling back: DESIGN.md section 6).

TERMINAL = frozenset(status for status, targets in ALLOWED_TRANSITIONS.items() if not targets)
OPEN = frozenset(ALLOWED_TRANSITIONS) - TERMINAL
# A worker holds a lease on the job while it is in one of these; a lapsed lease means it died.
LEASED = frozenset({S.RUNNING, S.ROLLING_BACK, S.CANCELLING})

JOB_TABLE = ProvisioningJob._meta.db_table
EVENT_TABLE = ProvisioningEvent._meta.db_table


class IllegalTransition(Exception):
    pass


def check_transition(from_: Iterable[str], to: str) -> list[str]:
    sources = list(from_)
    for status in sources:
        if to not in ALLOWED_TRANSITIONS[status]:
            raise IllegalTransition(f"{status} -> {to}")
    return sources


def quoted(statuses: Iterable[str]) -> str:
    """A SQL list of status literals: ('RUNNING', 'ROLLING_BACK')."""
    return "(" + ", ".join(f"'{status}'" for status in statuses) + ")"


@dataclass(frozen=True)
class SqlTransition:
    """The SQL of one allowed transition: `SET {set}` and `WHERE ... AND {where}`."""

    sources: tuple[str, ...]
    target: str

    @property
    def set(self) -> str:
        return f"status = '{self.target}'"

    @property
    def where(self) -> str:
        if len(self.sources) == 1:
            return f"status = '{self.sources[0]}'"
        return f"status IN {quoted(self.sources)}"


SQL_TRANSITIONS: set[tuple[str, str]] = set()


def sql_transition(from_: Iterable[str], to: str) -> SqlTransition:
    """The SQL for a transition the table allows (refused at import time otherwise)."""
    sources = check_transition(from_, to)
    SQL_TRANSITIONS.update((source, str(to)) for source in sources)
    return SqlTransition(tuple(str(s) for s in sources), str(to))


def sql_status_in(statuses: Iterable[str]) -> str:
    """A status test that writes nothing: `status IN (...)`, for reads and guards."""
    statuses = [str(s) for s in statuses]
    assert all(s in ALLOWED_TRANSITIONS for s in statuses), statuses
    return f"status IN {quoted(statuses)}"


def event_sql(*, source: str, job: str = "%(job)s", seq: str, kind: str, step: str = "''",
              message: str = "%(message)s", data: str = "'{}'::jsonb") -> str:
    """INSERT ... SELECT of job events, one per row of `source` (a CTE or table expression).

    The one way an event row is written: `seq` is the job's version after the change the
    event records (each argument is a SQL expression over `source`).
    """
    return (f"INSERT INTO {EVENT_TABLE} (job_id, seq, kind, step, message, data, created_at) "
            f"SELECT {job}, {seq}, {kind}, {step}, {message}, {data}, now() FROM {source}")


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


def _update(job_id, where: SqlTransition | None, status: str | None, fields: dict) -> tuple[int, str] | None:
    parts, params = _assignments(fields)
    if where is not None:
        parts.insert(0, where.set)
    parts += ["version = version + 1", "updated_at = now()"]
    sql = f"UPDATE {JOB_TABLE} SET {', '.join(parts)} WHERE id = %s"
    params.append(job_id)
    if where is not None:
        sql += f" AND {where.where}"
    sql += " RETURNING version, status"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return (row[0], row[1]) if row else None


def _event(job_id, seq: int, kind: str, step: str, message: str, data: dict | None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(event_sql(source="(SELECT 1) AS one", seq="%(seq)s", kind="%(kind)s", step="%(step)s",
                                 data="%(data)s"),
                       {"job": job_id, "seq": seq, "kind": kind, "step": step, "message": message,
                        "data": Jsonb(data or {})})


def transition(job_id, *, from_: Iterable[str], to: str, event: str, step: str = "", message: str = "",
               data: dict | None = None, **fields) -> int | None:
    """Move the job from one of `from_` to `to`; the new version, or None if it was not in `from_`."""
    assert transaction.get_connection().in_atomic_block, "transitions run inside a transaction"
    sources = check_transition(from_, to)
    result = _update(job_id, SqlTransition(tuple(sources), to), to, fields)
    if result is None:
        return None
    _event(job_id, result[0], event, step, message, data)
    return result[0]


def record(job_id, *, event: str, step: str = "", message: str = "", data: dict | None = None,
           **fields) -> tuple[int, str] | None:
    """Record an event (and field changes) without changing the status: (version, status)."""
    assert transaction.get_connection().in_atomic_block, "events are recorded inside a transaction"
    result = _update(job_id, None, None, fields)
    if result is None:
        return None
    _event(job_id, result[0], event, step, message, data)
    return result


# --- time --------------------------------------------------------------------------------------------


def simulated_time_scale(context: dict | None) -> float | None:
    """The job's simulated time scale, or None on a real backend (time is real there)."""
    if settings.MATIH_INFRA_BACKEND != "simulated":
        return None
    simulate = (context or {}).get("simulate") or {}
    return float(simulate.get("timeScale", settings.MATIH_SIM_TIME_SCALE))


def backoff_seconds(retry_count: int, retry_after: float | None = None, *, time_scale: float | None = None) -> float:
    """The wait before retry number `retry_count + 1`: the configured ladder, with jitter.

    In the simulated cloud every step runs at `time_scale`, so the ladder does too, but a
    scaled wait never drops below 1 s (or below the ladder's own value if that is shorter).
    A provider's Retry-After wins when it asks for longer.
    """
    ladder = settings.MATIH_RETRY_BACKOFF
    base = ladder[min(retry_count, len(ladder) - 1)]
    if time_scale is not None:
        base = max(base * time_scale, min(base, 1.0))
    jitter = settings.MATIH_RETRY_JITTER
    delay = base * (1 + random.uniform(-jitter, jitter)) if jitter else base
    if retry_after is not None:
        delay = max(delay, retry_after)
    return max(delay, 0.0)


def lease_until(now: datetime, extra_seconds: float = 0) -> datetime:
    return now + timedelta(seconds=settings.MATIH_STEP_LEASE + extra_seconds)
