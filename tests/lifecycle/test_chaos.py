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

import pytest
import redis
from django.conf import settings

from provisioning.engine.plans import Kind
from provisioning.models import ProvisioningEvent, ProvisioningJob, StepRun
from tenants.models import Tenant

from tests.dataplane.conftest import wait_for
from tests.dataplane.helpers import job_of

from .helpers import (
    TWIN_BOOKKEEPING,
    assert_inventory_is_what_exists,
    delete,
    differences,
    generic,
    provisioned,
    suspend,
    upgrade,
    wait_for_jobs,
    world,
)

pytestmark = pytest.mark.django_db(transaction=True)


def twin_world(client, from_tier: str, to_tier: str) -> dict:
    """The world of a tenant that made the change undisturbed (generic: any tenant's compares)."""
    (twin,) = provisioned(client, from_tier)
    upgrade(client, twin, to_tier)
    (job,) = wait_for_jobs([twin], Kind.CHANGE_TIER)
    assert job.status == "COMPLETED", job.error_message
    return generic(world(twin["slug"], ignore=TWIN_BOOKKEEPING), twin)


def assert_made_once_as_by_its_twin(client, tenant: dict, expected: dict) -> None:
    actual = generic(world(tenant["slug"], ignore=TWIN_BOOKKEEPING), tenant)
    wrong = differences(expected, actual)
    assert not wrong, "not what the undisturbed twin has ('extra': made beside it, twice, or left):\n" + wrong
    assert_inventory_is_what_exists(client, tenant)


def assert_nothing_left(client, tenant: dict) -> None:
    record = Tenant.objects.get(id=tenant["id"])
    assert record.status == "DELETED", f"the tenant is {record.status}: {record.error_message}"
    left = world(tenant["slug"])
    assert not left, "left after the deprovisioning:\n" + differences({}, left)
    assert_inventory_is_what_exists(client, tenant, left)


def attempts_of(job: ProvisioningJob) -> dict[str, int]:
    return dict(StepRun.objects.filter(job=job).values_list("name", "attempts"))


def kill_the_worker_running(dataplane, job: ProvisioningJob, phase: str, *, side_by_side: int = 1,
                            step: str | None = None) -> set[str]:
    """SIGKILL the worker child once it runs `side_by_side` steps of the phase (or `step`); the steps it ran."""
    def running() -> list[StepRun] | None:
        rows = list(StepRun.objects.filter(job=job, phase=phase, status="RUNNING", **({"name": step} if step else {})))
        return rows if len(rows) >= side_by_side else None

    rows = wait_for(running, timeout=60, interval=0.005, message=f"{side_by_side} step(s) of {phase} to run")
    pids = {int(row.claimed_by.split(":")[1]) for row in rows}
    assert len(pids) == 1, "a phase's steps run in one process"
    pid = pids.pop()
    assert pid in dataplane.children()
    os.kill(pid, signal.SIGKILL)
    return {row.name for row in rows}


def assert_only_the_killed_ran_again(job: ProvisioningJob, killed: set[str]) -> None:
    attempts = attempts_of(job)
    again = {name for name, count in attempts.items() if count == 2}
    assert again == killed and set(attempts.values()) <= {1, 2}, \
        f"killed {sorted(killed)}; the attempts: {attempts}"


# --- SIGKILL ----------------------------------------------------------------------------------------

KILLS = [
    # (from tier, to tier, the phase the kill hits, how many of its steps run side by side then, time scale)
    pytest.param("FREE", "PROFESSIONAL", "DEPLOYING_SERVICES", 2, None, 0.01, id="FREE->PROFESSIONAL-DEPLOYING_SERVICES"),
    # The apply holds the tenant's Terraform state lock: the step that runs again must get it back.
    pytest.param("PROFESSIONAL", "ENTERPRISE", "PROVISIONING_INFRASTRUCTURE", 1, "TERRAFORM_APPLY", 0.002,
                 id="PROFESSIONAL->ENTERPRISE-PROVISIONING_INFRASTRUCTURE"),
    pytest.param("PROFESSIONAL", "ENTERPRISE", "MIGRATING_DATA", 1, "COPY_TENANT_DATA", 0.004,
                 id="PROFESSIONAL->ENTERPRISE-MIGRATING_DATA"),
]


@pytest.mark.parametrize("from_tier, to_tier, phase, side_by_side, step, scale", KILLS)
def test_worker_killed_while_a_tier_change_runs_the_change_completes_making_everything_once(
        dataplane, sweeper, operator_client, from_tier, to_tier, phase, side_by_side, step, scale):
    expected = twin_world(operator_client, from_tier, to_tier)
    (tenant,) = provisioned(operator_client, from_tier)
    upgrade(operator_client, tenant, to_tier, time_scale=scale)
    job = job_of(tenant["id"])
    killed = kill_the_worker_running(dataplane, job, phase, side_by_side=side_by_side, step=step)

    (job,) = wait_for_jobs([tenant], Kind.CHANGE_TIER, timeout=120)
    assert job.status == "COMPLETED", job.error_message
    record = Tenant.objects.get(id=tenant["id"])
    assert (record.status, record.tier) == ("ACTIVE", to_tier)
    assert_only_the_killed_ran_again(job, killed)
    assert_made_once_as_by_its_twin(operator_client, tenant, expected)
    wait_for(lambda: len(dataplane.children()) == 2, timeout=10, message="the pool to replace its child")


KILLED_DEPROVISIONS = [
    pytest.param("PROFESSIONAL", None, 0.01, id="PROFESSIONAL"),
    # terraform destroy takes the tenant's state lock itself: the step that runs again must get it back.
    pytest.param("ENTERPRISE", "DESTROY_DEDICATED_CLUSTER", 0.003, id="ENTERPRISE-DESTROY_DEDICATED_CLUSTER"),
]


@pytest.mark.parametrize("tier, step, scale", KILLED_DEPROVISIONS)
def test_worker_killed_while_a_deprovisioning_tears_down_nothing_is_left(dataplane, sweeper, operator_client,
                                                                        tier, step, scale):
    (tenant,) = provisioned(operator_client, tier)
    suspend(operator_client, tenant, time_scale=scale)  # its pace: the deprovisioning takes the latest job's
    wait_for_jobs([tenant], Kind.SUSPEND)
    delete(operator_client, tenant, grace_seconds=0)  # suspended already: the sweeper deprovisions it now
    job = wait_for(lambda: (lambda j: j if j.kind == Kind.DEPROVISION else None)(job_of(tenant["id"])),
                   timeout=30, message="the sweeper to start the deprovisioning")
    killed = kill_the_worker_running(dataplane, job, "TEARING_DOWN", step=step)

    (job,) = wait_for_jobs([tenant], Kind.DEPROVISION, timeout=120)
    assert job.status == "COMPLETED", job.error_message
    assert_only_the_killed_ran_again(job, killed)
    assert_nothing_left(operator_client, tenant)
    wait_for(lambda: len(dataplane.children()) == 2, timeout=10, message="the pool to replace its child")


# --- FLUSHALL ---------------------------------------------------------------------------------------

CHANGES = [("FREE", "PROFESSIONAL", 0.01), ("PROFESSIONAL", "FREE", 0.01), ("PROFESSIONAL", "ENTERPRISE", 0.003)]
DEPROVISIONS = [("FREE", 0.01), ("PROFESSIONAL", 0.01), ("ENTERPRISE", 0.004)]


def test_redis_wiped_during_tier_changes_and_deprovisions_every_job_completes_and_nothing_is_left(
        dataplane, sweeper, operator_client):
    expected = {(a, b): twin_world(operator_client, a, b) for a, b, _ in CHANGES}
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
    for tenant, (a, b, _) in zip(changing, CHANGES):
        record = Tenant.objects.get(id=tenant["id"])
        assert (record.status, record.tier) == ("ACTIVE", b)
        assert_made_once_as_by_its_twin(operator_client, tenant, expected[(a, b)])
    for tenant in leaving:
        assert_nothing_left(operator_client, tenant)
