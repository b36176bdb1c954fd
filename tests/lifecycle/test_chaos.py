"""Chaos during the tenant's life: a worker child SIGKILLed mid-phase, Redis wiped mid-flight, while
tiers change and tenants are deprovisioned. Every job ends COMPLETED, each resource is made once,
nothing is left after a deprovisioning, and the steps' attempts say what ran again.

"Made once, exactly": a tenant that went through the chaos has the same world in the simulated
cloud (tests/lifecycle/helpers.world: every resource with its state, Helm revisions included) as
its twin, a tenant that made the same change undisturbed; a release installed twice with other
values would be one revision more, a step that made its resource under another name one
resource more. Real worker process (prefork, 2 children), the sweeper in a thread, FAST timings
(lease 3 s).
"""
from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass

import pytest
import redis
from django.conf import settings
from django.db import connection, transaction

from matih.processes import children_of, descendants_of
from provisioning.engine.plans import Kind
from provisioning.models import ProvisioningEvent, ProvisioningJob, StepRun
from tenants.models import Tenant
from tests.harness import wait_for
from tests.dataplane.helpers import job_of

from .helpers import (
    TWIN_BOOKKEEPING,
    assert_inventory_is_what_exists,
    delete,
    differences,
    generic,
    made_by_each_step,
    provisioned,
    suspend,
    upgrade,
    wait_for_jobs,
    world,
)

pytestmark = pytest.mark.django_db(transaction=True)


@dataclass(frozen=True)
class Twin:
    """What a tenant that made the change undisturbed has (generic: any tenant's compares)."""

    world: dict
    made: dict  # step -> what it recorded in the inventory


def twin_of(client, from_tier: str, to_tier: str) -> Twin:
    (twin,) = provisioned(client, from_tier)
    upgrade(client, twin, to_tier)
    (job,) = wait_for_jobs([twin], Kind.CHANGE_TIER)
    assert job.status == "COMPLETED", job.error_message
    return Twin(generic(world(twin["slug"], ignore=TWIN_BOOKKEEPING), twin), made_by_each_step(job, twin))


def assert_made_once_as_by_its_twin(client, tenant: dict, job: ProvisioningJob, twin: Twin) -> None:
    actual = generic(world(tenant["slug"], ignore=TWIN_BOOKKEEPING), tenant)
    wrong = differences(twin.world, actual)
    assert not wrong, "not what the undisturbed twin has ('extra': made beside it, twice, or left):\n" + wrong
    made = made_by_each_step(job, tenant)
    wrong = {step: (twin.made.get(step), made.get(step)) for step in set(twin.made) | set(made)
             if twin.made.get(step) != made.get(step)}
    assert not wrong, f"steps that recorded other resources than the twin's (twin's, this one's): {wrong}"
    assert_inventory_is_what_exists(client, tenant)


def assert_nothing_left(client, tenant: dict) -> None:
    record = Tenant.objects.get(id=tenant["id"])
    assert record.status == "DELETED", f"the tenant is {record.status}: {record.error_message}"
    left = world(tenant["slug"])
    assert not left, "left after the deprovisioning:\n" + differences({}, left)
    assert_inventory_is_what_exists(client, tenant, left)


def attempts_of(job: ProvisioningJob) -> dict[str, int]:
    return dict(StepRun.objects.filter(job=job).values_list("name", "attempts"))


@dataclass(frozen=True)
class Kill:
    steps: set[str]  # the steps the killed child was running
    worker: int  # the worker whose pool child it was

    def wait_for_the_pool(self) -> None:
        wait_for(lambda: len(children_of(self.worker)) == 2, timeout=10, message="the pool to replace its child")


def worker_of(pid: int) -> int:
    """The Celery worker whose pool child `pid` is, checked to be one this test session started (the
    lifecycle and dataplane conftests each start one: any of them may run a phase)."""
    assert pid in descendants_of(os.getpid()), f"{pid} is not a worker child of this test session"
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[1])  # the field after the state: the parent


def _running_in(job: ProvisioningJob, pid: int) -> set[str]:
    return {r.name for r in StepRun.objects.filter(job=job, status="RUNNING", claimed_by__contains=f":{pid}:")}


def kill_the_worker_running(job: ProvisioningJob, phase: str, *, side_by_side: int = 1,
                            step: str | None = None) -> Kill:
    """SIGKILL the worker child once it runs `side_by_side` steps of the phase (or `step`); the steps it ran."""
    def running() -> list[StepRun] | None:
        rows = list(StepRun.objects.filter(job=job, phase=phase, status="RUNNING", **({"name": step} if step else {})))
        return rows if len(rows) >= side_by_side else None

    rows = wait_for(running, timeout=60, interval=0.005, message=f"{side_by_side} step(s) of {phase} to run")
    pids = {int(row.claimed_by.split(":")[1]) for row in rows}
    assert len(pids) == 1, "a phase's steps run in one process"
    pid = pids.pop()
    worker = worker_of(pid)
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)  # a commit the child sent before it died lands; nothing takes its steps over for a lease
    return Kill(steps=_running_in(job, pid), worker=worker)


def kill_the_worker_between_the_work_and_its_commit(job: ProvisioningJob, step: str) -> Kill:
    """SIGKILL the worker child after `step` did its work and before its success committed; the steps it ran.

    1. Once the step runs, hold the job's row lock. A step's success is one statement that updates
       its StepRun row, then the job's row (provisioning.engine.runner.SUCCEED_SQL): once the step's
       work is done, that statement holds the StepRun row and waits for the job's.
    2. The StepRun row held by another (tried in a savepoint rolled back, so that this test never
       holds it; twice, 50 ms apart: a heartbeat renewing the lease holds it an instant): kill the
       child; end its statements that wait for a lock (PostgreSQL notices a dead client only when
       it next talks to it: the backend would commit them once the lock is free; in these tests
       nothing else waits for a lock, the sweeper skips locked rows).
    3. Release the lock. The step is RUNNING with its work done, as if its worker died just before
       the commit; the phase's other steps running then died mid-step or before their commit too.
    """
    wait_for(lambda: StepRun.objects.filter(job=job, name=step, status="RUNNING").exists(), timeout=60,
             interval=0.005, message=f"{step} to run")
    row = StepRun.objects.get(job=job, name=step)
    pid = int(row.claimed_by.split(":")[1])
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SELECT 1 FROM {ProvisioningJob._meta.db_table} WHERE id = %s FOR UPDATE", [job.id])

        def held_by_its_success() -> bool:
            with transaction.atomic():
                cursor.execute(f"SELECT 1 FROM {StepRun._meta.db_table} WHERE id = %s FOR UPDATE SKIP LOCKED",
                               [row.id])
                held = cursor.fetchone() is None
                transaction.set_rollback(True)
            return held

        wait_for(lambda: held_by_its_success() and (time.sleep(0.05) or held_by_its_success()), timeout=60,
                 interval=0.005, message=f"{step}'s work to be done")
        worker = worker_of(pid)
        os.kill(pid, signal.SIGKILL)

        def waiting() -> list[int]:
            cursor.execute("SELECT pg_stat_clear_snapshot()")  # else a transaction sees its first look's
            cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                           "AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'")
            return [backend for (backend,) in cursor.fetchall()]

        cursor.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", [waiting()])
        wait_for(lambda: not waiting(), timeout=10, message="the dead child's statements to end")
    killed = Kill(steps=_running_in(job, pid), worker=worker)
    assert step in killed.steps, f"{step} committed before the kill: {killed.steps}"
    return killed


def assert_only_the_killed_ran_again(job: ProvisioningJob, killed: set[str]) -> None:
    attempts = attempts_of(job)
    again = {name for name, count in attempts.items() if count == 2}
    assert again == killed and set(attempts.values()) <= {1, 2}, \
        f"killed {sorted(killed)}; the attempts: {attempts}"


# --- SIGKILL ----------------------------------------------------------------------------------------

# When the kill lands: while the steps run (the simulated cloud sleeps a step's time before its
# work, so nothing is made yet), or after a step's work, before its success commits (the work is
# done again: it must make nothing twice).
MID_STEP, BEFORE_COMMIT = "mid-step", "before-commit"


def kill(job: ProvisioningJob, moment: str, phase: str, step: str | None) -> Kill:
    if moment == BEFORE_COMMIT:
        return kill_the_worker_between_the_work_and_its_commit(job, step)
    return kill_the_worker_running(job, phase, side_by_side=2 if step is None else 1, step=step)


KILLED_CHANGES = [
    # (from tier, to tier, the phase, the step (None: two side by side), when, the time scale)
    pytest.param("FREE", "PROFESSIONAL", "DEPLOYING_SERVICES", None, MID_STEP, 0.01,
                 id="FREE->PROFESSIONAL-DEPLOYING_SERVICES-mid-step"),
    pytest.param("FREE", "PROFESSIONAL", "DEPLOYING_SERVICES", "UPGRADE_CORE_SERVICES", BEFORE_COMMIT, 0.004,
                 id="FREE->PROFESSIONAL-UPGRADE_CORE_SERVICES-before-commit"),
    # The apply holds the tenant's Terraform state lock: the step that runs again must get it back.
    pytest.param("PROFESSIONAL", "ENTERPRISE", "PROVISIONING_INFRASTRUCTURE", "TERRAFORM_APPLY", BEFORE_COMMIT, 0.001,
                 id="PROFESSIONAL->ENTERPRISE-TERRAFORM_APPLY-before-commit"),
    pytest.param("PROFESSIONAL", "ENTERPRISE", "MIGRATING_DATA", "COPY_TENANT_DATA", MID_STEP, 0.004,
                 id="PROFESSIONAL->ENTERPRISE-COPY_TENANT_DATA-mid-step"),
]


@pytest.mark.parametrize("from_tier, to_tier, phase, step, moment, scale", KILLED_CHANGES)
def test_worker_killed_while_a_tier_change_runs_the_change_completes_making_everything_once(
        dataplane, sweeper, operator_client, from_tier, to_tier, phase, step, moment, scale):
    twin = twin_of(operator_client, from_tier, to_tier)
    (tenant,) = provisioned(operator_client, from_tier)
    upgrade(operator_client, tenant, to_tier, time_scale=scale)
    job = job_of(tenant["id"])
    killed = kill(job, moment, phase, step)

    (job,) = wait_for_jobs([tenant], Kind.CHANGE_TIER, timeout=120)
    assert job.status == "COMPLETED", job.error_message
    record = Tenant.objects.get(id=tenant["id"])
    assert (record.status, record.tier) == ("ACTIVE", to_tier)
    assert_only_the_killed_ran_again(job, killed.steps)
    assert_made_once_as_by_its_twin(operator_client, tenant, job, twin)
    killed.wait_for_the_pool()


KILLED_DEPROVISIONS = [
    pytest.param("PROFESSIONAL", None, MID_STEP, 0.01, id="PROFESSIONAL-mid-step"),
    # terraform destroy takes the tenant's state lock itself: the step that runs again must take it again.
    pytest.param("ENTERPRISE", "DESTROY_DEDICATED_CLUSTER", BEFORE_COMMIT, 0.002,
                 id="ENTERPRISE-DESTROY_DEDICATED_CLUSTER-before-commit"),
]


@pytest.mark.parametrize("tier, step, moment, scale", KILLED_DEPROVISIONS)
def test_worker_killed_while_a_deprovisioning_tears_down_nothing_is_left(dataplane, sweeper, operator_client,
                                                                        tier, step, moment, scale):
    (tenant,) = provisioned(operator_client, tier)
    suspend(operator_client, tenant, time_scale=scale)  # its pace: the deprovisioning takes the latest job's
    wait_for_jobs([tenant], Kind.SUSPEND)
    delete(operator_client, tenant, grace_seconds=0)  # suspended already: the sweeper deprovisions it now
    wait_for(lambda: job_of(tenant["id"]).kind == Kind.DEPROVISION, timeout=30,
             message="the sweeper to start the deprovisioning")
    job = job_of(tenant["id"])
    killed = kill(job, moment, "TEARING_DOWN", step)

    (job,) = wait_for_jobs([tenant], Kind.DEPROVISION, timeout=120)
    assert job.status == "COMPLETED", job.error_message
    assert_only_the_killed_ran_again(job, killed.steps)
    assert_nothing_left(operator_client, tenant)
    killed.wait_for_the_pool()


# --- FLUSHALL ---------------------------------------------------------------------------------------

CHANGES = [("FREE", "PROFESSIONAL", 0.01), ("PROFESSIONAL", "FREE", 0.01), ("PROFESSIONAL", "ENTERPRISE", 0.003)]
DEPROVISIONS = [("FREE", 0.01), ("PROFESSIONAL", 0.01), ("ENTERPRISE", 0.004)]


def test_redis_wiped_during_tier_changes_and_deprovisions_every_job_completes_and_nothing_is_left(
        dataplane, sweeper, operator_client):
    twins = {(a, b): twin_of(operator_client, a, b) for a, b, _ in CHANGES}
    changing = [provisioned(operator_client, a)[0] for a, _, _ in CHANGES]
    leaving = [provisioned(operator_client, tier)[0] for tier, _ in DEPROVISIONS]
    for tenant, (_, scale) in zip(leaving, DEPROVISIONS):
        suspend(operator_client, tenant, time_scale=scale)
    wait_for_jobs(leaving, Kind.SUSPEND)

    for tenant, (_, to_tier, scale) in zip(changing, CHANGES):
        upgrade(operator_client, tenant, to_tier, time_scale=scale)
    for tenant in leaving:
        delete(operator_client, tenant, grace_seconds=0)

    def mid_flight() -> bool:
        """Every job started and none ended; tier changes and deprovisions mid-chain (a step done), the
        others' phases queued (2 worker processes for 6 jobs)."""
        jobs = [job_of(t["id"]) for t in changing + leaving]
        assert not any(j.is_terminal for j in jobs if j.kind != Kind.SUSPEND), "a job ended before the wipe"
        if any(j.kind == Kind.SUSPEND for j in jobs):
            return False  # a deprovisioning the sweeper has not started yet
        return {j.kind for j in jobs if j.status == "RUNNING" and j.succeeded_steps} == {Kind.CHANGE_TIER,
                                                                                         Kind.DEPROVISION}

    wait_for(mid_flight, timeout=30, interval=0.01, message="tier changes and deprovisions mid-chain")
    redis.Redis.from_url(settings.REDIS_URL).flushall()

    jobs = wait_for_jobs(changing, Kind.CHANGE_TIER, timeout=120) + wait_for_jobs(leaving, Kind.DEPROVISION,
                                                                                 timeout=120)
    assert {job.status for job in jobs} == {"COMPLETED"}, [(j.kind, j.tier, j.status, j.error_message) for j in jobs]
    recovered = ProvisioningEvent.objects.filter(job__in=jobs, kind__in=["job.recovered", "job.dispatched"])
    assert recovered.exists(), "the wipe lost messages and the sweeper sent them again"
    for job in jobs:
        again = {name: count for name, count in attempts_of(job).items() if count != 1}
        assert not again, f"{job.kind} {job.tier}: a lost message re-ran nothing, yet {again}"
    for tenant, job, (a, b, _) in zip(changing, jobs, CHANGES):
        record = Tenant.objects.get(id=tenant["id"])
        assert (record.status, record.tier) == ("ACTIVE", b)
        assert_made_once_as_by_its_twin(operator_client, tenant, job, twins[(a, b)])
    for tenant in leaving:
        assert_nothing_left(operator_client, tenant)
