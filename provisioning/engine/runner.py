"""The phase runner: one delivery of `provisioning.run_phase(job_id, phase)`.

A phase's steps run inside its task, each with its own StepRun claim, lease, outputs and
events; steps whose `after` dependencies allow run side by side in a bounded thread pool
(the steps are I/O-bound: cloud APIs, Helm, Terraform), a lone ready step runs in the task's
own thread. The database is the truth, so any delivery may be a duplicate or a stray:

- a phase already done returns at once, and the chain goes on;
- a phase that is not the job's current one (an earlier phase is unfinished), a job that is
  not RUNNING, or a step held under a live lease elsewhere ends this delivery's chain: the
  holder's task carries it on (of two deliveries finishing the last steps together, at
  least one reads both successes, because each success returns the job's succeeded steps
  read under the job's row lock);
- a step that fails stops new steps from starting; the running siblings finish; then the
  chain ends: a transient failure waits for its retry (the sweeper resumes it), a permanent
  one (or a spent budget) sends the rollback canvas.

The hot path is one statement to load the phase (the first phase also starts the job in it,
and the load claims the phase's root steps), then one per step, one round trip: the success
(step SUCCEEDED, the job's succeeded_steps appended and its context merged under its row lock,
an event), which also claims the steps of the phase that waited for it last (each RUNNING with
its lease, an event). A step is claimed by a statement of its own (the claim: step RUNNING with
its lease, the job's version, an event) only when it is taken over, or when its phase's run
finds it ready. The job's statuses in that SQL come from the state table
(provisioning.engine.states.sql_transition).
"""
from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.db.models import F
from django.utils import timezone
from psycopg.types.json import Jsonb

from deploy.backend import backend_for
from deploy.errors import InfraError, TransientInfraError
from provisioning.engine import heartbeat, inventory
from provisioning.engine.outcomes import outcome_of
from provisioning.engine.plans import Plan, plan_of
from provisioning.engine.states import (
    EVENT_TABLE,
    JOB_TABLE,
    backoff_seconds,
    event_sql,
    lease_until,
    record,
    simulated_time_scale,
    sql_status_in,
    sql_transition,
    transition,
)
from provisioning.engine.steps import IMPLEMENTATIONS, StepContext
from provisioning.live.publish import publish_change
from provisioning.models import JobStatus, StepRun, StepStatus
from tenants.models import Tenant

log = logging.getLogger("matih.engine")

S = JobStatus
STEP_TABLE = StepRun._meta.db_table


def worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def claim_token() -> str:
    return f"{worker_identity()}:{time.monotonic_ns()}"


# --- the SQL of the hot path ------------------------------------------------------------------------

START = sql_transition([S.PENDING], S.RUNNING)
COMPLETE = sql_transition([S.RUNNING], S.COMPLETED)
IS_RUNNING = sql_status_in([S.RUNNING])

# Which plan a job follows, from its row (provisioning.engine.plans.plan_key, in SQL).
PLAN_KEY_SQL = ("CASE WHEN kind = 'CHANGE_TIER' THEN kind || ':' || from_tier || '->' || tier "
                "ELSE kind || ':' || tier END")

# The load of a phase also claims its root steps (those that wait for no other step of the
# phase): one statement to start a phase, not one plus one per step. Each claimed step gets
# its own token, lease and step.started event (seq: the job's version after its claim).
LAPSED_TIME = ("elapsed_ms + CASE WHEN status = '{running}' "
               "THEN greatest(0, (extract(epoch FROM now() - started_at) * 1000)::int) ELSE 0 END"
               ).format(running=StepStatus.RUNNING)


def _claim_set(owner: str) -> str:
    """The SET clause of every claim of a step (PENDING, or RUNNING with a lapsed lease): RUNNING
    under `owner` (an SQL expression) with a new lease; a step taken over keeps the time its dead
    worker ran it (progress never goes back)."""
    return (f"status = '{StepStatus.RUNNING}', attempts = attempts + 1, started_at = now(), finished_at = NULL, "
            f"duration_ms = NULL, error = '', claimed_by = {owner}, lease_expires_at = %(lease)s, "
            f"elapsed_ms = {LAPSED_TIME}")


def _started_events(source: str, claimed: str, seq_before: str) -> str:
    """The step.started event of each step `claimed` (a CTE), numbered by name after `seq_before`
    (the job's version before the claims)."""
    return event_sql(source=f"{source}, (SELECT *, row_number() OVER (ORDER BY name) AS rn FROM {claimed}) c",
                     seq=f"{seq_before} + c.rn", kind="'step.started'", step="c.name",
                     message="c.name || ' started.'", data="jsonb_build_object('attempt', c.attempts)")


_CLAIM_ROOTS = f"""
claimed_old AS (
    UPDATE {STEP_TABLE} SET {_claim_set("%(owner)s || ':' || name")}
    WHERE job_id = %(job)s AND phase = %(phase)s
      AND name = ANY(ARRAY(SELECT r.name FROM unnest(%(root_plans)s::varchar[], %(root_names)s::varchar[])
                                               AS r(plan, name)
                           WHERE r.plan = (SELECT {PLAN_KEY_SQL} FROM {JOB_TABLE} WHERE id = %(job)s)))
      AND (status = '{StepStatus.PENDING}' OR (status = '{StepStatus.RUNNING}' AND lease_expires_at < now()))
      AND EXISTS (SELECT 1 FROM {JOB_TABLE} WHERE id = %(job)s AND {IS_RUNNING})
    RETURNING id, name, attempts, started_at
), counted_old AS (
    SELECT count(*) AS n FROM claimed_old
), bumped AS (
    UPDATE {JOB_TABLE} SET version = version + (SELECT n FROM counted_old), updated_at = now(),
        lease_expires_at = CASE WHEN lease_expires_at IS NULL OR lease_expires_at < %(renew_before)s
                                THEN %(lease)s ELSE lease_expires_at END
    WHERE id = %(job)s AND {IS_RUNNING} AND (SELECT n FROM counted_old) > 0
    RETURNING version
), claimed_old_events AS (
    {_started_events("bumped", "claimed_old", "bumped.version - (SELECT n FROM counted_old)")}
)"""

_SELECT_PHASE = """
    t.id, t.name, t.slug, t.tier, t.status, t.region, t.admin_email, t.service_principal_encrypted, ts.values,
    coalesce((SELECT json_agg(json_build_array(s.name, s.status, s.lease_expires_at < now()))
              FROM {steps} s WHERE s.job_id = j.id AND s.phase = %(phase)s), '[]'::json)"""

LOAD_SQL = f"""
WITH {_CLAIM_ROOTS.strip()}
SELECT j.status, j.kind, j.tier, j.from_tier, j.context, coalesce((SELECT version FROM bumped), j.version),
    j.succeeded_steps, {_SELECT_PHASE.format(steps=STEP_TABLE).strip()},
    false,
    coalesce((SELECT json_agg(json_build_array(id, name, attempts, started_at)) FROM claimed_old), '[]'::json)
FROM {JOB_TABLE} j
JOIN tenants_tenant t ON t.id = j.tenant_id
LEFT JOIN tenants_tenantsettings ts ON ts.tenant_id = j.tenant_id
WHERE j.id = %(job)s
"""

# The first phase starts a PENDING job in the same statement: PENDING -> RUNNING, its plan's
# steps made (its first phase's roots made claimed), its events. Which plan the job follows is
# read from its row: the steps of every plan that begins with this phase are parameters, and
# only the job's plan's are inserted. The SELECT does not see what its CTEs wrote (one
# snapshot), so when it started the job it reports RUNNING and the phase's steps itself.
START_AND_LOAD_SQL = f"""
WITH started AS (
    UPDATE {JOB_TABLE} SET {START.set}, updated_at = now(), started_at = now(),
        lease_owner = %(owner)s, lease_expires_at = %(lease)s,
        -- one version for the start, one for each root step claimed with it
        version = version + 1 + coalesce((SELECT roots FROM unnest(%(plan_keys)s::varchar[], %(plan_roots)s::int[])
                                          AS p(plan, roots) WHERE p.plan = {PLAN_KEY_SQL}), 0)
    WHERE id = %(job)s AND {START.where} AND {PLAN_KEY_SQL} = ANY(%(plan_keys)s::varchar[])
    RETURNING version, {PLAN_KEY_SQL} AS plan, kind, tier, from_tier
), planned AS (
    SELECT step.name, step.phase, step.position, step.claim
    FROM unnest(%(plans)s::varchar[], %(names)s::varchar[], %(phases)s::varchar[], %(positions)s::int[],
                %(claims)s::bool[]) AS step(plan, name, phase, position, claim)
    WHERE step.plan = (SELECT plan FROM started)
), made AS (
    INSERT INTO {STEP_TABLE} (job_id, name, phase, position, status, attempts, compensation_attempts, error,
                              outputs, claimed_by, elapsed_ms, started_at, lease_expires_at)
    SELECT %(job)s, name, phase, position,
           CASE WHEN claim THEN '{StepStatus.RUNNING}' ELSE '{StepStatus.PENDING}' END,
           CASE WHEN claim THEN 1 ELSE 0 END, 0, '', '{{}}'::jsonb,
           CASE WHEN claim THEN %(owner)s || ':' || name ELSE '' END, 0,
           CASE WHEN claim THEN now() END, CASE WHEN claim THEN %(lease)s::timestamptz END
    FROM planned
    ON CONFLICT (job_id, name) DO NOTHING
    RETURNING id, name, attempts, started_at, status
), claimed_new AS (
    SELECT id, name, attempts, started_at FROM made WHERE status = '{StepStatus.RUNNING}'
), e AS (
    {event_sql(source="started", seq="started.version - (SELECT count(*) FROM planned WHERE claim)",
               kind="'job.started'",
               message="'Started: ' || started.kind || ' (' || coalesce(started.from_tier || ' -> ', '') "
                       "|| started.tier || ').'")}
), claimed_new_events AS (
    {_started_events("started", "claimed_new", "started.version - (SELECT count(*) FROM planned WHERE claim)")}
), {_CLAIM_ROOTS.strip()}
SELECT CASE WHEN started.version IS NULL THEN j.status ELSE '{START.target}' END, j.kind, j.tier, j.from_tier,
    j.context, coalesce(started.version, (SELECT version FROM bumped), j.version), j.succeeded_steps,
    t.id, t.name, t.slug, t.tier, t.status, t.region, t.admin_email, t.service_principal_encrypted, ts.values,
    CASE WHEN started.version IS NULL THEN
        coalesce((SELECT json_agg(json_build_array(s.name, s.status, s.lease_expires_at < now()))
                  FROM {STEP_TABLE} s WHERE s.job_id = j.id AND s.phase = %(phase)s), '[]'::json)
    ELSE (SELECT json_agg(json_build_array(name, '{StepStatus.PENDING}', false)) FROM planned
          WHERE phase = %(phase)s) END,
    started.version IS NOT NULL,
    coalesce((SELECT json_agg(json_build_array(id, name, attempts, started_at)) FROM claimed_new),
             (SELECT json_agg(json_build_array(id, name, attempts, started_at)) FROM claimed_old), '[]'::json)
FROM {JOB_TABLE} j
JOIN tenants_tenant t ON t.id = j.tenant_id
LEFT JOIN tenants_tenantsettings ts ON ts.tenant_id = j.tenant_id
LEFT JOIN started ON true
WHERE j.id = %(job)s
"""

# A step is claimable when PENDING, or RUNNING with a lapsed lease (its worker died: taken over).
CLAIM_SQL = f"""
WITH s AS (
    UPDATE {STEP_TABLE} SET {_claim_set("%(owner)s")}
    WHERE job_id = %(job)s AND name = %(name)s
      AND (status = '{StepStatus.PENDING}' OR (status = '{StepStatus.RUNNING}' AND lease_expires_at < now()))
      AND EXISTS (SELECT 1 FROM {JOB_TABLE} WHERE id = %(job)s AND {IS_RUNNING})
    RETURNING id, attempts, started_at
), j AS (
    -- A new version for the live views; the lease moves only once half of it is used, so
    -- that no indexed column changes and the update stays HOT.
    UPDATE {JOB_TABLE} SET version = version + 1, updated_at = now(),
        lease_expires_at = CASE WHEN lease_expires_at IS NULL OR lease_expires_at < %(renew_before)s
                                THEN %(lease)s ELSE lease_expires_at END
    WHERE id = %(job)s AND {IS_RUNNING} AND EXISTS (SELECT 1 FROM s)
    RETURNING version, tenant_id
), e AS (
    {event_sql(source="j", seq="j.version", kind="'step.started'", step="%(name)s",
               data="jsonb_build_object('attempt', (SELECT attempts FROM s))")}
)
-- A refused claim still says what the job is: a job no longer RUNNING (cancelled, failed by a
-- sibling) must end the phase's run, and the rollback it needs must not be forgotten.
SELECT s.id, s.attempts, s.started_at, j.version, j.tenant_id,
       (SELECT status FROM {JOB_TABLE} WHERE id = %(job)s)
FROM (SELECT 1) AS one LEFT JOIN s ON true LEFT JOIN j ON true
"""

# A success also claims the steps of its phase that it was the last to wait for (their other
# dependencies already succeeded): the next step starts without a statement of its own. They are
# claimed only while the job is RUNNING; the job's version counts the success and each claim, and
# each claim gets its step.started event (seq: the job's version after it), as CLAIM_SQL's.
# Parameters: next_names, and next_deps (each one's dependencies, comma-joined). A step that no
# other waits for succeeds with the statement without them (SUCCEED_SQL), a little cheaper.
_NEXT_READY = ("SELECT n.name FROM unnest(%(next_names)s::varchar[], %(next_deps)s::varchar[]) AS n(name, deps) "
               "WHERE string_to_array(n.deps, ',')::varchar[] <@ {succeeded}")


def _succeed_sql(*, claim_next: bool) -> str:
    claimed = "(SELECT count(*) FROM ready_next)" if claim_next else "0"
    version = "version + 1"
    if claim_next:
        version += (f" + CASE WHEN {IS_RUNNING} THEN (SELECT count(*) FROM ("
                    f"{_NEXT_READY.format(succeeded='array_append(succeeded_steps, %(name)s)')}) AS r) ELSE 0 END")
    claim_ctes = f""", ready_next AS (
    SELECT r.name FROM j, LATERAL ({_NEXT_READY.format(succeeded="j.succeeded_steps")}) AS r
    WHERE j.status = '{S.RUNNING}'
), claimed_next AS (
    UPDATE {STEP_TABLE} SET {_claim_set("%(next_owner)s || ':' || name")}
    WHERE job_id = %(job)s AND name = ANY(ARRAY(SELECT name FROM ready_next))
      AND status = '{StepStatus.PENDING}'
    RETURNING id, name, attempts, started_at
), claimed_next_events AS (
    {_started_events("j", "claimed_next", f"j.version - {claimed}")}
)""" if claim_next else ""
    claims = ("coalesce((SELECT json_agg(json_build_array(id, name, attempts, started_at)) FROM claimed_next), "
              "'[]'::json)") if claim_next else "'[]'::json"
    return f"""
WITH s AS (
    UPDATE {STEP_TABLE} SET status = '{StepStatus.SUCCEEDED}', outputs = %(outputs)s, finished_at = now(),
        succeeded_at = now(), duration_ms = %(duration)s, elapsed_ms = elapsed_ms + %(duration)s,
        lease_expires_at = NULL
    WHERE id = %(step)s AND status = '{StepStatus.RUNNING}' AND claimed_by = %(owner)s
    RETURNING id
), j AS (
    UPDATE {JOB_TABLE} SET version = {version}, updated_at = now(),
        lease_expires_at = CASE WHEN lease_expires_at IS NULL OR lease_expires_at < %(renew_before)s
                                THEN %(lease)s ELSE lease_expires_at END,
        succeeded_steps = array_append(succeeded_steps, %(name)s), context = context || %(context)s
    WHERE id = %(job)s AND EXISTS (SELECT 1 FROM s)
    RETURNING version, status, succeeded_steps, tenant_id, context
){claim_ctes}{inventory.ctes("j")}, e AS (
    {event_sql(source="j", seq=f"j.version - {claimed}", kind="'step.succeeded'", step="%(name)s")}
)
SELECT version, status, succeeded_steps, tenant_id, context, {claims} FROM j
"""


SUCCEED_SQL = _succeed_sql(claim_next=False)
SUCCEED_AND_CLAIM_SQL = _succeed_sql(claim_next=True)


def _json(value):
    return json.loads(value) if isinstance(value, str) else value


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _lease_params() -> dict:
    now = timezone.now()
    return {"lease": lease_until(now), "renew_before": now + timedelta(seconds=settings.MATIH_STEP_LEASE / 2)}


# --- what a delivery found and did --------------------------------------------------------------------


@dataclass
class Phase:
    """The phase as loaded: the job, its tenant, and the statuses of the phase's steps."""

    job_id: str
    phase: str
    status: str
    plan: Plan
    context: dict
    succeeded: set[str]
    tenant: Tenant
    tenant_settings: dict
    statuses: dict[str, str]  # step -> status; a RUNNING step whose lease lapsed is "LAPSED"
    claims: dict = None  # step -> Claim: the root steps the load claimed for this delivery


@dataclass
class Result:
    """What a delivery did, and whether the chain goes on after it."""

    outcome: str
    go_on: bool

    def __str__(self) -> str:
        return self.outcome


LAPSED = "LAPSED"
CLAIMABLE = (StepStatus.PENDING, LAPSED)


def load_phase(job_id, phase: str) -> Phase | None:
    """One statement: the job, its tenant, the phase's steps, and the claims of its root steps
    (a first phase also starts a PENDING job)."""
    starting = _plans_starting_with(phase)
    params = {"job": job_id, "phase": phase, "owner": claim_token(), **_lease_params(), **_roots_of(phase)}
    with connection.cursor() as cursor:
        cursor.execute(LOAD_SQL if starting is None else START_AND_LOAD_SQL, {**params, **(starting or {})})
        row = cursor.fetchone()
    if row is None:
        return None
    (status, kind, tier, from_tier, context, version, succeeded, tenant_id, t_name, t_slug, t_tier, t_status,
     t_region, t_email, t_principal, t_settings, steps, started, claimed) = row
    statuses = {}
    for name, step_status, lapsed in _json(steps) or ():
        statuses[name] = LAPSED if step_status == StepStatus.RUNNING and lapsed else step_status
    claims = _claims(claimed, params["owner"])
    statuses.update(dict.fromkeys(claims, StepStatus.RUNNING))
    tenant = Tenant(id=tenant_id, name=t_name, slug=t_slug, tier=t_tier, status=t_status, region=t_region,
                    admin_email=t_email, service_principal_encrypted=t_principal)
    if started or claims:
        publish_change(tenant_id=tenant_id, job_id=job_id, version=version, status=S.RUNNING)
    return Phase(job_id=str(job_id), phase=phase, status=status if not started else S.RUNNING,
                 plan=plan_of(kind, tier, from_tier), context=_json(context) or {}, succeeded=set(succeeded or ()),
                 tenant=tenant, tenant_settings=_json(t_settings) or {}, statuses=statuses, claims=claims)


def _claims(rows, owner: str) -> dict:
    """step -> Claim, from a statement's claimed steps (json [id, name, attempts, started_at]), each
    claimed as `owner:name` (the load's roots, a success's next steps)."""
    return {name: Claim(step_id=step_id, attempts=attempts, owner=f"{owner}:{name}", started_at=_timestamp(started_at))
            for step_id, name, attempts, started_at in _json(rows) or ()}


def _timestamp(value):
    from django.utils.dateparse import parse_datetime

    return parse_datetime(value) if isinstance(value, str) else value


_starting: dict[str, dict | None] = {}
_roots: dict[str, dict] = {}


def _plans_starting_with(phase: str) -> dict | None:
    """The steps of every plan whose first phase is `phase`, as START_AND_LOAD_SQL's parameters."""
    if phase not in _starting:
        from provisioning.engine.plans import PLANS

        rows, roots = [], {}
        for plan in PLANS.values():
            if plan.phases[0] != phase:
                continue
            first = {step.name for step in plan.steps_of(phase) if not step.after}
            roots[plan.key] = len(first)
            rows += [(plan.key, step.name, step.phase, position, step.name in first)
                     for position, step in enumerate(plan.steps)]
        _starting[phase] = None if not rows else {
            "plans": [r[0] for r in rows], "names": [r[1] for r in rows], "phases": [r[2] for r in rows],
            "positions": [r[3] for r in rows], "claims": [r[4] for r in rows],
            "plan_keys": list(roots), "plan_roots": list(roots.values())}
    return _starting[phase]


def _roots_of(phase: str) -> dict:
    """(plan, step) for the steps of `phase` that wait for no other step, in every plan that has it."""
    if phase not in _roots:
        from provisioning.engine.plans import PLANS

        pairs = [(plan.key, step.name) for plan in PLANS.values() if phase in plan.phases
                 for step in plan.steps_of(phase) if not step.after]
        _roots[phase] = {"root_plans": [p for p, _ in pairs], "root_names": [n for _, n in pairs]}
    return _roots[phase]


# --- one step ------------------------------------------------------------------------------------------


@dataclass
class StepOutcome:
    name: str
    status: str  # succeeded, failed, held (claimed by someone else or not claimable)
    job_status: str | None = None
    succeeded: list[str] | None = None
    context: dict | None = None
    claims: dict | None = None  # step -> Claim: the steps the success claimed (it was their last wait)


@dataclass
class Claim:
    step_id: int
    attempts: int
    owner: str
    started_at: object  # the database's clock


def claim_step(job_id, name: str) -> tuple[Claim | None, str | None]:
    """(the claim, None), or (None, the job's status) when the step is not claimable now."""
    owner = claim_token()
    with connection.cursor() as cursor:
        cursor.execute(CLAIM_SQL, {"job": job_id, "name": name, "owner": owner, "message": f"{name} started.",
                                   **_lease_params()})
        step_id, attempts, started_at, version, tenant_id, job_status = cursor.fetchone()
    if step_id is None:
        return None, job_status
    publish_change(tenant_id=tenant_id, job_id=job_id, version=version, status=S.RUNNING)
    return Claim(step_id=step_id, attempts=attempts, owner=owner, started_at=started_at), None


def run_step(phase: Phase, name: str, context: dict, claim: Claim | None = None) -> StepOutcome:
    """Claim the step (unless the phase's load did), run it with its lease renewed, and commit its
    outputs or its failure."""
    if claim is None:
        claim, job_status = claim_step(phase.job_id, name)
        if claim is None:
            return StepOutcome(name=name, status="held", job_status=job_status)
    step = phase.plan.step(name)
    backend = backend_for(simulate=context.get("simulate"), tenant_id=phase.tenant.id)
    ctx = StepContext(job_id=phase.job_id, tenant=phase.tenant, tenant_settings=phase.tenant_settings,
                      job_context=context, backend=backend, attempt=claim.attempts, plan=phase.plan)
    heartbeat.hold(claim.step_id, phase.job_id)
    started = time.monotonic()
    try:
        before_step = getattr(backend, "before_step", None)
        if before_step is not None:
            before_step(name, claim.attempts, step.nominal_seconds)
        outputs = IMPLEMENTATIONS[name].run(ctx) or {}
    except InfraError as error:
        return fail_step(phase, claim, name, error, started)
    except Exception as error:  # an unexpected error is treated as transient, and shown as is
        log.exception("step %s of job %s raised", name, phase.job_id)
        return fail_step(phase, claim, name, TransientInfraError(
            f"{name} raised {type(error).__name__}: {error}", hint="See the worker's log for the traceback."),
            started)
    finally:
        heartbeat.release(claim.step_id)
    return succeed_step(phase, claim, name, outputs, ctx.context_updates, started)


def succeed_step(phase: Phase, claim: Claim, name: str, outputs: dict, context_updates: dict,
                 started: float) -> StepOutcome:
    next_owner = claim_token()
    with connection.cursor() as cursor:
        following = _next_of(phase.plan, name)
        cursor.execute(SUCCEED_AND_CLAIM_SQL if following["next_names"] else SUCCEED_SQL, {
            "step": claim.step_id, "owner": claim.owner, "outputs": Jsonb(outputs),
            "duration": _elapsed_ms(started), "name": name, "context": Jsonb(context_updates),
            "job": phase.job_id, "message": f"{name} succeeded.", "next_owner": next_owner, **_lease_params(),
            **inventory.params(outputs), **following,
        })
        row = cursor.fetchone()
    if row is None:
        # Our lease lapsed and another worker took the step over; its result stands.
        return StepOutcome(name=name, status="held")
    version, job_status, succeeded, tenant_id, context, claimed = row
    publish_change(tenant_id=tenant_id, job_id=phase.job_id, version=version, status=job_status)
    return StepOutcome(name=name, status="succeeded", job_status=job_status, succeeded=list(succeeded),
                       context=_json(context), claims=_claims(claimed, next_owner))


_next: dict[tuple[str, str], dict] = {}


def _next_of(plan: Plan, name: str) -> dict:
    """SUCCEED_SQL's parameters for the steps of `name`'s phase that wait for it."""
    key = (plan.key, name)
    if key not in _next:
        waiting = [step for step in plan.steps_of(plan.step(name).phase) if name in step.after]
        _next[key] = {"next_names": [step.name for step in waiting],
                      "next_deps": [",".join(step.after) for step in waiting]}
    return _next[key]


def fail_step(phase: Phase, claim: Claim, name: str, error: InfraError, started: float) -> StepOutcome:
    """Record the failure; then retry later (transient, budget left), roll back, or fail forward.

    1. The step FAILED, under the job's row lock.
    2. A job no longer RUNNING (another step failed it, or it is being cancelled) only
       gets the event.
    3. Transient with budget left: RETRY_SCHEDULED with the backoff; the sweeper resumes it.
    4. Else, in a phase that rolls back: ROLLING_BACK (the runner sends the rollback canvas
       once the phase's running steps have finished). In a forward-only phase: FAILED, and
       the plan's outcome says what the tenant becomes.
    """
    now = timezone.now()
    message = f"Step {name} ({phase.phase}) failed: {error.describe()}"
    duration = _elapsed_ms(started)
    ran_ms = max(duration, int((now - claim.started_at).total_seconds() * 1000))  # as the status counts it
    tenant_id = phase.tenant.id
    with transaction.atomic():
        done = StepRun.objects.filter(id=claim.step_id, status=StepStatus.RUNNING, claimed_by=claim.owner).update(
            status=StepStatus.FAILED, error=message, finished_at=now, duration_ms=duration,
            lease_expires_at=None, elapsed_ms=F("elapsed_ms") + ran_ms,
        )
        if not done:
            return StepOutcome(name=name, status="held")
        current = _lock_job(phase.job_id)
        if current["status"] != S.RUNNING:
            result = record(phase.job_id, event="step.failed", step=name, message=message)
            _publish_on_commit(tenant_id, phase.job_id, result[0], result[1])
            return StepOutcome(name=name, status="failed", job_status=result[1])
        if error.transient and current["retry_count"] < current["max_retries"]:
            delay = backoff_seconds(current["retry_count"], error.retry_after,
                                    time_scale=simulated_time_scale(phase.context))
            version = transition(
                phase.job_id, from_=[S.RUNNING], to=S.RETRY_SCHEDULED, event="job.retry_scheduled",
                step=name, message=message,
                data={"retry": current["retry_count"] + 1, "delaySeconds": round(delay, 3)},
                retry_count=current["retry_count"] + 1, next_retry_at=now + timedelta(seconds=delay),
                error_message=message, lease_expires_at=None,
            )
            _publish_on_commit(tenant_id, phase.job_id, version, S.RETRY_SCHEDULED)
            return StepOutcome(name=name, status="failed", job_status=S.RETRY_SCHEDULED)
        reason = message if not error.transient else f"{message} (retries exhausted: {current['retry_count']})"
        if phase.plan.is_forward_only(phase.phase):
            from provisioning.engine.rollback import fail_forward

            fail_forward(phase.job_id, phase.plan, reason)
            return StepOutcome(name=name, status="failed", job_status=S.FAILED)
        version = transition(phase.job_id, from_=[S.RUNNING], to=S.ROLLING_BACK, event="job.rolling_back",
                             step=name, message=reason, error_message=reason, lease_expires_at=lease_until(now))
        _publish_on_commit(tenant_id, phase.job_id, version, S.ROLLING_BACK)
    return StepOutcome(name=name, status="failed", job_status=S.ROLLING_BACK)


def _lock_job(job_id) -> dict:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT status, retry_count, max_retries FROM {JOB_TABLE} WHERE id = %s FOR UPDATE",
                       [job_id])
        status, retry_count, max_retries = cursor.fetchone()
    return {"status": status, "retry_count": retry_count, "max_retries": max_retries}


def _publish_on_commit(tenant_id, job_id, version, status) -> None:
    transaction.on_commit(lambda: publish_change(tenant_id=tenant_id, job_id=job_id, version=version,
                                                 status=status))


# --- the steps' threads -----------------------------------------------------------------------------------

_pool: ThreadPoolExecutor | None = None
_pool_pid: int | None = None
_pool_lock = threading.Lock()


def step_pool() -> ThreadPoolExecutor:
    """This process's pool for the steps a phase runs side by side (made after the fork)."""
    global _pool, _pool_pid
    if _pool is None or _pool_pid != os.getpid():
        with _pool_lock:
            if _pool is None or _pool_pid != os.getpid():
                _pool = ThreadPoolExecutor(max_workers=settings.MATIH_PHASE_THREADS,
                                           thread_name_prefix="matih-step")
                _pool_pid = os.getpid()
    return _pool


def _guarded(phase: Phase, name: str, context: dict, claim: Claim | None = None) -> StepOutcome:
    """run_step; a failure of the engine itself (the database went away mid-step) ends this delivery's
    run of the step without a verdict: its lease lapses and the step is taken over."""
    try:
        return run_step(phase, name, context, claim)
    except Exception:
        log.exception("step %s of job %s: the engine failed; its lease will lapse", name, phase.job_id)
        connection.close()
        return StepOutcome(name=name, status="held")


def _in_thread(phase: Phase, name: str, context: dict, claim: Claim | None = None) -> StepOutcome:
    close_old_connections()  # this thread's own connection: drop it if it went bad or old
    try:
        return _guarded(phase, name, context, claim)
    finally:
        close_old_connections()


# --- one phase ------------------------------------------------------------------------------------------


def run_phase(job_id, phase: str) -> Result:
    """Run one phase of a job; see the module's docstring for what a delivery may find.

    1. Load the phase (the first one starts the job). Not RUNNING, or not the current
       phase: end the chain (or, for a phase already done, let it go on).
    2. Run the ready steps, side by side as their dependencies allow, until none is ready
       or one has failed and the running ones have finished.
    3. The phase done: complete the job if it was the last, and let the chain go on. A
       failure or a cancel: end the chain (after sending the rollback canvas when the job
       rolls back). Steps held elsewhere: end the chain, their holder goes on.
    """
    loaded = load_phase(job_id, phase)
    if loaded is None:
        return Result("gone", go_on=False)
    if loaded.status != S.RUNNING:
        return Result(f"job-{loaded.status.lower()}", go_on=False)
    plan = loaded.plan
    position = plan.position(loaded.succeeded)
    if position.is_complete:
        complete_job(loaded)  # its last step committed, then its worker died
        return Result("completed", go_on=False)
    if phase != position.current:
        if phase in position.completed:
            return Result("already-done", go_on=True)
        return Result("not-current", go_on=False)

    statuses = dict(loaded.statuses)
    succeeded = set(loaded.succeeded)
    context = dict(loaded.context)
    in_flight: dict[Future, str] = {}
    job_status = S.RUNNING
    failed = False
    claims = dict(loaded.claims or {})  # claimed by the load (or later by a success): launched next round

    def ready() -> list[str]:
        return [name for name in plan.ready(phase, statuses, claimable=CLAIMABLE) if name not in in_flight.values()]

    def absorb(outcome: StepOutcome) -> None:
        nonlocal job_status, failed, context
        if outcome.status == "succeeded":
            statuses[outcome.name] = StepStatus.SUCCEEDED
            succeeded.update(outcome.succeeded or ())
            for name in outcome.succeeded or ():
                if name in statuses:
                    statuses[name] = StepStatus.SUCCEEDED
            context = outcome.context or context
            for name, claim in (outcome.claims or {}).items():
                statuses[name] = StepStatus.RUNNING
                claims[name] = claim  # claimed by the success: launched in the next round
        elif outcome.status == "failed":
            statuses[outcome.name] = StepStatus.FAILED
            failed = True
        else:
            statuses[outcome.name] = "HELD"
        if outcome.job_status is not None:
            job_status = outcome.job_status

    while True:
        waiting = [*claims, *ready()] if (job_status == S.RUNNING and not failed) else list(claims)
        if not waiting and not in_flight:
            break
        if len(waiting) == 1 and not in_flight:
            name = waiting[0]
            absorb(_guarded(loaded, name, context, claims.pop(name, None)))  # a lone step runs in this thread
            continue
        for name in waiting:
            statuses[name] = StepStatus.RUNNING
            in_flight[step_pool().submit(_in_thread, loaded, name, dict(context), claims.pop(name, None))] = name
        done, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
        for future in done:
            in_flight.pop(future)
            absorb(future.result())

    if job_status in (S.ROLLING_BACK, S.CANCELLING):
        from provisioning.engine.rollback import send_job_rollback

        send_job_rollback(job_id)  # the compensations waited for this phase's running steps
        return Result("rolling-back" if job_status == S.ROLLING_BACK else "cancelling", go_on=False)
    if failed or job_status != S.RUNNING:
        return Result(f"failed-{job_status.lower()}", go_on=False)
    if all(step.name in succeeded for step in plan.steps_of(phase)):
        if phase == plan.phases[-1]:
            loaded.succeeded = succeeded
            loaded.context = context
            complete_job(loaded)
            return Result("completed", go_on=True)
        return Result("phase-done", go_on=True)
    # A step of the phase runs (or waits on one that runs) under a live lease elsewhere: its
    # holder reads the phase done when its step commits, and carries the chain on.
    return Result("held-elsewhere", go_on=False)


# --- completion ------------------------------------------------------------------------------------------


def complete_sql(completion) -> str:
    """RUNNING -> COMPLETED once every step of the plan has succeeded, with the outcome's CTEs."""
    return f"""
WITH j AS (
    UPDATE {JOB_TABLE} SET {COMPLETE.set}, version = version + 1, updated_at = now(), completed_at = now(),
        lease_expires_at = NULL, next_retry_at = NULL, error_message = ''
    WHERE id = %(job)s AND {COMPLETE.where} AND succeeded_steps @> %(steps)s::varchar[]
    RETURNING version, tenant_id, context, tier, from_tier
){completion.ctes}, e AS (
    {event_sql(source="j", seq="j.version", kind="'job.completed'")}
)
SELECT version, tenant_id FROM j
"""


def complete_job(loaded: Phase) -> bool:
    """RUNNING -> COMPLETED and the plan's outcome, in one statement, once every step has succeeded."""
    plan = loaded.plan
    completion = outcome_of(plan).completed(slug=loaded.tenant.slug, tier=plan.tier, plan=plan)
    with connection.cursor() as cursor:
        cursor.execute(complete_sql(completion), {"job": loaded.job_id, "steps": list(plan.step_names),
                                                  "message": completion.message, **completion.params})
        row = cursor.fetchone()
    if row is None:
        return False
    version, tenant_id = row
    publish_change(tenant_id=tenant_id, job_id=loaded.job_id, version=version, status=S.COMPLETED)
    outcome_of(plan).after_completion(job_id=loaded.job_id, tenant_id=tenant_id)
    notify(loaded.job_id)
    return True


def notify(job_id) -> None:
    from provisioning.engine.canvas import send_job_task
    from provisioning.tasks import notify_job_finished

    try:
        send_job_task(notify_job_finished, job_id)
    except Exception:  # a notification never fails a job
        log.warning("notification not queued", extra={"jobId": str(job_id)}, exc_info=True)


__all__ = ["run_phase", "complete_job", "Result", "load_phase", "EVENT_TABLE"]


def ensure_step_runs(job) -> None:
    """Make the job's StepRun rows (PENDING) if they are not there: what starting a job does."""
    from provisioning.engine.plans import plan_of_job

    plan = plan_of_job(job)
    StepRun.objects.bulk_create(
        [StepRun(job_id=job.id, name=step.name, phase=step.phase, position=index)
         for index, step in enumerate(plan.steps)],
        ignore_conflicts=True,
    )
