"""Resuming jobs: the one way a job that stopped is driven again (the retry API, the admin's
"retry now" and the sweeper all come here).

`resume(cursor, ids, ...)` moves a batch of jobs in a few statements (whatever the batch's
size): their status (RETRY_SCHEDULED -> RUNNING for a due retry; unchanged for a job whose
lease lapsed), their lease pushed forward, their failed steps PENDING again (resuming from
the failed step, not from the start), one event each with seq = version. `send(resumed)`
then sends, after the caller's commit, each job's canvas from its first unfinished phase
(finished phases are never sent again), or its rollback canvas for a job being undone.
"""
from __future__ import annotations

from dataclasses import dataclass

from provisioning.engine.canvas import send_phases
from provisioning.engine.plans import Plan, plan_of
from provisioning.engine.states import JOB_TABLE, SqlTransition, event_sql, sql_status_in, sql_transition
from provisioning.live.publish import publish_change
from provisioning.models import JobStatus, StepRun, StepStatus

S = JobStatus
STEP_TABLE = StepRun._meta.db_table

RETRY_DUE = sql_transition([S.RETRY_SCHEDULED], S.RUNNING)
STILL_RUNNING = sql_transition([S.RUNNING], S.RUNNING)
STILL_ROLLING_BACK = sql_transition([S.ROLLING_BACK], S.ROLLING_BACK)
STILL_CANCELLING = sql_transition([S.CANCELLING], S.CANCELLING)


@dataclass(frozen=True)
class Resumed:
    job_id: str
    version: int
    tenant_id: str
    status: str
    plan: Plan
    succeeded: tuple[str, ...]

    @property
    def from_phase(self) -> str:
        """Where the canvas starts again: the first unfinished phase (the last, to complete, if none)."""
        position = self.plan.position(self.succeeded)
        return self.plan.phases[-1] if position.is_complete else position.current


def resume_sql(transitions: list[SqlTransition], extra_set: str = "") -> str:
    """The UPDATE (and events) of `resume`, with the statuses its transitions allow."""
    status_case = "CASE " + " ".join(f"WHEN {t.where} THEN '{t.target}'" for t in transitions) + " END"
    sources = sorted({source for t in transitions for source in t.sources})
    sql = (f"WITH j AS (UPDATE {JOB_TABLE} SET status = {status_case}, lease_expires_at = %(lease)s, "
           f"version = version + 1, updated_at = now(){extra_set} "
           f"WHERE id = ANY(%(ids)s::uuid[]) AND {sql_status_in(sources)} "
           f"RETURNING id, version, tenant_id, status, kind, tier, from_tier, succeeded_steps), "
           f"e AS ({event_sql(source='j', job='j.id', seq='j.version', kind='%(event)s')}) "
           f"SELECT id, version, tenant_id, status, kind, tier, from_tier, succeeded_steps FROM j")
    return sql


def resume(cursor, ids: list, *, transitions: list[SqlTransition], lease, event: str, message: str,
           reset_failed_steps: bool, extra_set: str = "", params: dict | None = None) -> list[Resumed]:
    """Move the jobs (already claimed by the caller: FOR UPDATE) and record one event each.

    1. One UPDATE of the jobs: the status by `transitions` (each job in one of their sources),
       the lease, the version, and (same statement) one event each; RETURNING what the canvas needs.
    2. The failed steps of the jobs it moved back to PENDING.
    """
    if not ids:
        return []
    cursor.execute(resume_sql(transitions, extra_set),
                   {"ids": ids, "lease": lease, "event": event, "message": message, **(params or {})})
    resumed = [Resumed(job_id=str(job_id), version=version, tenant_id=str(tenant_id), status=status,
                       plan=plan_of(kind, tier, from_tier), succeeded=tuple(succeeded or ()))
               for job_id, version, tenant_id, status, kind, tier, from_tier, succeeded in cursor.fetchall()]
    if reset_failed_steps and resumed:
        # A step a worker is claiming right now is left to it (SKIP LOCKED).
        cursor.execute(
            f"UPDATE {STEP_TABLE} SET status = '{StepStatus.PENDING}', lease_expires_at = NULL, claimed_by = '' "
            f"WHERE id IN (SELECT id FROM {STEP_TABLE} WHERE job_id = ANY(%(ids)s::uuid[]) "
            f"AND status = '{StepStatus.FAILED}' FOR UPDATE SKIP LOCKED)", {"ids": [job.job_id for job in resumed]})
    return resumed


def send(resumed: list[Resumed]) -> None:
    """After the commit: each job's canvas from its first unfinished phase, or its rollback."""
    from provisioning.engine.rollback import send_job_rollback

    for job in resumed:
        if job.status == S.PENDING:
            send_phases(job.job_id, job.plan)
        elif job.status == S.RUNNING:
            send_phases(job.job_id, job.plan, job.from_phase)
        elif job.status in (S.ROLLING_BACK, S.CANCELLING):
            send_job_rollback(job.job_id)
        publish_change(tenant_id=job.tenant_id, job_id=job.job_id, version=job.version, status=job.status)


def redispatch(cursor, ids: list, *, now, event: str, message: str) -> list[Resumed]:
    """PENDING jobs never started (the broker was down at commit): mark them dispatched, send them again.

    No status changes: the first phase starts the job.
    """
    if not ids:
        return []
    cursor.execute(
        f"WITH j AS (UPDATE {JOB_TABLE} SET dispatched_at = %(now)s, version = version + 1, updated_at = now() "
        f"WHERE id = ANY(%(ids)s::uuid[]) AND {sql_status_in([S.PENDING])} "
        f"RETURNING id, version, tenant_id, status, kind, tier, from_tier, succeeded_steps), "
        f"e AS ({event_sql(source='j', job='j.id', seq='j.version', kind='%(event)s')}) "
        f"SELECT id, version, tenant_id, status, kind, tier, from_tier, succeeded_steps FROM j",
        {"ids": ids, "now": now, "event": event, "message": message})
    return [Resumed(job_id=str(job_id), version=version, tenant_id=str(tenant_id), status=status,
                    plan=plan_of(kind, tier, from_tier), succeeded=tuple(succeeded or ()))
            for job_id, version, tenant_id, status, kind, tier, from_tier, succeeded in cursor.fetchall()]
