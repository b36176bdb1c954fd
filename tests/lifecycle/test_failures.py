"""A failure injected into each phase of each lifecycle operation leaves the tenant in the status the
contract promises (DESIGN.md section 6), with everything the failed job made undone.

The cases come from the plans: for every plan of every operation after provisioning
(provisioning.engine.plan_table), every phase, and in it a permanent fault at both ends of the
phase: its first step, and its last to become ready (the longest chain of `after` dependencies
inside the phase; ties: the later in plan order), so that the phase has done what it can before
the fault. A new phase, or a new step at either end of one, is a new case.

What is compared is the tenant's whole world in the simulated cloud (tests/lifecycle/helpers.world):
each resource's kind, location, name and state (replicas, quotas, ingress class and block, DNS
IPs, schema tables, ...), its cluster slot, its dedicated cluster's record and its Terraform state
lock. Ignored, as bookkeeping: a Helm release's revision (installing the former tier's values again
is a new revision; the values' fingerprint is compared).

- A phase that rolls back: the job FAILED, the tenant as the plan's outcome promises (CHANGE_TIER:
  ACTIVE at its old tier on its old plan, errorMessage naming the step; SUSPEND: ACTIVE; ACTIVATE:
  SUSPENDED), its world exactly as before, and GET /resources listing exactly what exists.
- A forward-only phase (an ENTERPRISE move's DECOMMISSIONING_SHARED, every phase of DEPROVISION):
  the job FAILED, the tenant as promised (ENTERPRISE on its dedicated cluster; PENDING_DELETION
  with what is left named), the inventory honest; then retry with the fault removed completes the
  job (DELETED, nothing left), redoing nothing the failed job had done.

Each test takes one plan and runs its cases side by side, one tenant each (a test's flush costs
more than a case); the report names every case that broke.
"""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from billing.models import Subscription
from provisioning.engine.plans import PLANS, Kind, Plan
from provisioning.models import ProvisioningJob, StepRun, StepStatus
from tenants.models import Tenant
from tests.harness import wait_for
from tests.dataplane.helpers import job_of

from .helpers import (
    activate,
    assert_inventory_is_what_exists,
    delete,
    differences,
    inventoried,
    provisioned,
    retry,
    start_deprovision,
    suspend,
    tenant_status,
    upgrade,
    wait_for_jobs,
    world,
)

pytestmark = pytest.mark.django_db(transaction=True)

LIFECYCLE_PLANS = [plan for plan in PLANS.values() if plan.kind != Kind.PROVISION]


def _depth(plan: Plan, name: str) -> int:
    """How many steps of its phase must succeed, one after another, before the step can start."""
    after = plan.step(name).after
    return 1 + max(_depth(plan, before) for before in after) if after else 0


def ends_of(plan: Plan, phase: str) -> list[str]:
    """The phase's first step, and its last to become ready (one name when they are the same)."""
    steps = [step.name for step in plan.steps_of(phase)]
    last = max(reversed(steps), key=lambda name: _depth(plan, name))  # ties: the later in plan order
    return list(dict.fromkeys([steps[0], last]))


@dataclass(frozen=True)
class Case:
    plan: Plan
    phase: str
    step: str

    @property
    def forward_only(self) -> bool:
        return self.plan.is_forward_only(self.phase)

    @property
    def faults(self) -> dict:
        return {self.step: {"mode": "permanent"}}

    def __str__(self) -> str:
        return f"{self.plan.key} {self.phase} ({self.step})"


def cases_of(plan: Plan) -> list[Case]:
    return [Case(plan, phase, step) for phase in plan.phases for step in ends_of(plan, phase)]


def test_the_cases_cover_every_phase_of_every_lifecycle_plan():
    kinds = {plan.kind for plan in LIFECYCLE_PLANS}
    assert kinds == {Kind.CHANGE_TIER, Kind.SUSPEND, Kind.ACTIVATE, Kind.DEPROVISION}
    assert {p.key for p in LIFECYCLE_PLANS} >= {
        "CHANGE_TIER:FREE->PROFESSIONAL", "CHANGE_TIER:PROFESSIONAL->FREE", "CHANGE_TIER:FREE->ENTERPRISE",
        "CHANGE_TIER:PROFESSIONAL->ENTERPRISE", "SUSPEND:PROFESSIONAL", "ACTIVATE:PROFESSIONAL",
        "DEPROVISION:PROFESSIONAL"}
    for plan in LIFECYCLE_PLANS:
        assert {case.phase for case in cases_of(plan)} == set(plan.phases), plan.key
    deploying = ends_of(PLANS["CHANGE_TIER:FREE->PROFESSIONAL"], "DEPLOYING_SERVICES")
    assert deploying == ["UPGRADE_CORE_SERVICES", "SWITCH_TENANT_INGRESS"], "the last to become ready, not DEPLOY_MONITORING"


# --- the tenant in the operation's starting state, through the API ----------------------------------


def prepare(client, plan: Plan, count: int) -> list[dict]:
    """`count` tenants where the plan starts: ACTIVE at its from-tier (CHANGE_TIER) or tier; SUSPENDED
    (ACTIVATE); PENDING_DELETION with its grace period over and its suspension done (DEPROVISION)."""
    tenants = provisioned(client, plan.from_tier or plan.tier, count)
    if plan.kind == Kind.ACTIVATE:
        for tenant in tenants:
            suspend(client, tenant)
        wait_for_jobs(tenants, Kind.SUSPEND)
    elif plan.kind == Kind.DEPROVISION:
        for tenant in tenants:
            delete(client, tenant, grace_seconds=0)  # an ACTIVE tenant is suspended at once
        wait_for_jobs(tenants, Kind.SUSPEND)
    expected = {Kind.ACTIVATE: "SUSPENDED", Kind.DEPROVISION: "PENDING_DELETION"}.get(plan.kind, "ACTIVE")
    for tenant in tenants:
        assert job_of(tenant["id"]).status == "COMPLETED", job_of(tenant["id"]).error_message
        assert tenant_status(tenant) == expected
    return tenants


def start(client, case: Case, tenant: dict) -> None:
    plan = case.plan
    if plan.kind == Kind.CHANGE_TIER:
        upgrade(client, tenant, plan.tier, faults=case.faults)
    elif plan.kind == Kind.SUSPEND:
        suspend(client, tenant, faults=case.faults)
    elif plan.kind == Kind.ACTIVATE:
        activate(client, tenant, faults=case.faults)
    else:
        start_deprovision(tenant, faults=case.faults)


# --- what each case must leave ---------------------------------------------------------------------


@dataclass
class Run:
    case: Case
    tenant: dict
    before: dict  # the tenant's world before the operation
    record_before: dict  # GET /tenants/{id} before the operation
    job: ProvisioningJob | None = None

    @property
    def record(self) -> Tenant:
        return Tenant.objects.get(id=self.tenant["id"])


def check_the_failure(client, run: Run) -> None:
    case, job, record = run.case, run.job, run.record
    assert job.kind == case.plan.kind and job.status == "FAILED", f"the job is {job.kind} {job.status}"
    status = client.get(f"/api/v1/tenants/{record.id}/provisioning/status").json()
    assert (status["kind"], status["jobStatus"], status["status"]) == (case.plan.kind, "FAILED", record.status), status
    assert case.step in (status["errorMessage"] or ""), f"the status's errorMessage: {status['errorMessage']!r}"
    failed = StepRun.objects.get(job=job, name=case.step)
    assert failed.attempts == 1, f"{case.step} ran {failed.attempts} times: a permanent fault is not retried"
    assert case.step in job.error_message, f"the job's errorMessage does not name {case.step}: {job.error_message}"
    now = world(run.tenant["slug"])
    assert_inventory_is_what_exists(client, run.tenant, now)
    if case.forward_only:
        check_a_forward_failure(run, record)
        return
    assert not StepRun.objects.filter(job=job, status=StepStatus.COMPENSATION_FAILED).exists()
    changed = differences(run.before, now)
    assert not changed, "the tenant's world is not what it was:\n" + changed
    assert record_of(client, run.tenant) == run.record_before, "the tenant record is not what it was"
    if case.plan.kind == Kind.CHANGE_TIER:
        assert (record.status, record.tier) == ("ACTIVE", case.plan.from_tier), \
            f"the tenant is {record.status} at {record.tier}"
        assert case.step in record.error_message, f"the tenant's errorMessage: {record.error_message!r}"
        assert Subscription.objects.get(tenant_id=record.id).plan.tier == case.plan.from_tier
    else:
        promised = {Kind.SUSPEND: "ACTIVE", Kind.ACTIVATE: "SUSPENDED"}[case.plan.kind]
        assert record.status == promised, f"the tenant is {record.status}, not {promised}"
        assert case.step in record.error_message, f"the tenant's errorMessage: {record.error_message!r}"


def check_a_forward_failure(run: Run, record: Tenant) -> None:
    case, job = run.case, run.job
    assert not StepRun.objects.filter(job=job, status__in=[StepStatus.COMPENSATING, StepStatus.COMPENSATED]) \
        .exists(), "a forward-only phase undid something"
    if case.plan.kind == Kind.CHANGE_TIER:
        assert (record.status, record.tier, record.deployment_type) == ("ACTIVE", "ENTERPRISE", "DEDICATED"), \
            f"the tenant is {record.status} at {record.tier} ({record.deployment_type})"
        assert "decommissioning" in record.error_message and case.step in record.error_message, record.error_message
        assert Subscription.objects.get(tenant_id=record.id).plan.tier == "ENTERPRISE"
        return
    assert record.status == "PENDING_DELETION", f"the tenant is {record.status}"
    left = inventoried(world(run.tenant["slug"]))
    unnamed = sorted(f"{kind} {name}" for kind, _, name in left if f"{kind} {name}" not in record.error_message)
    assert not unnamed, f"the tenant's errorMessage does not name what is left: {unnamed}: {record.error_message!r}"


def check_the_retry(client, run: Run, before_retry: dict, carried_on: ProvisioningJob) -> None:
    """Retry without the fault: a job that carries on from the failed step and completes."""
    case = run.case
    assert carried_on.id != run.job.id and carried_on.kind == case.plan.kind
    assert carried_on.status == "COMPLETED", f"the retry's job is {carried_on.status}: {carried_on.error_message}"
    attempts = dict(StepRun.objects.filter(job=carried_on).values_list("name", "attempts"))
    done_before = set(run.job.succeeded_steps)
    redone = [name for name in done_before if attempts.get(name) != StepRun.objects.get(job=run.job, name=name).attempts]
    assert not redone, f"the retry ran again what the failed job had done: {redone}"
    now = world(run.tenant["slug"])
    assert_inventory_is_what_exists(client, run.tenant, now)
    record = run.record
    if case.plan.kind == Kind.DEPROVISION:
        assert record.status == "DELETED", f"the tenant is {record.status}"
        assert not now, "left after the deprovisioning:\n" + differences({}, now)
        return
    # An ENTERPRISE move: the shared side goes, nothing else changes.
    shared = run.job.context["sharedCluster"]["name"]
    expected = {key: data for key, data in before_retry.items() if not _on_the_shared_side(key, shared)}
    changed = differences(expected, now)
    assert not changed, "the decommissioning's retry did more than remove the shared side:\n" + changed
    assert (record.status, record.tier, record.error_message) == ("ACTIVE", "ENTERPRISE", "")


def _on_the_shared_side(key: tuple, shared_cluster: str) -> bool:
    kind, location, _ = key
    return location == shared_cluster or kind == "ClusterSlot" or (
        kind == "DatabaseSchema" and location.endswith("/matih_data"))


def record_of(client, tenant: dict) -> dict:
    response = client.get(f"/api/v1/tenants/{tenant['id']}")
    assert response.status_code == 200, response.content
    return response.json()


# --- the matrix --------------------------------------------------------------------------------------


@pytest.mark.parametrize("plan", LIFECYCLE_PLANS, ids=lambda plan: plan.key)
def test_a_failure_in_each_phase_leaves_the_tenant_as_the_contract_promises(
        dataplane, operator_client, plan):
    cases = cases_of(plan)
    tenants = prepare(operator_client, plan, len(cases))
    runs = [Run(case, tenant, world(tenant["slug"]), record_of(operator_client, tenant))
            for case, tenant in zip(cases, tenants)]
    for run in runs:
        start(operator_client, run.case, run.tenant)
    for run, job in zip(runs, wait_for_jobs(tenants, plan.kind)):
        run.job = job

    broken: dict[str, str] = {}

    def check(run: Run, what, *args) -> None:
        try:
            what(operator_client, run, *args)
        except AssertionError as failure:
            broken[str(run.case)] = str(failure)

    for run in runs:
        check(run, check_the_failure)
    forward = [run for run in runs if run.case.forward_only and run.job.status == "FAILED"]
    before_retry = {run.case: world(run.tenant["slug"]) for run in forward}
    for run in forward:
        retry(operator_client, run.tenant)
    wait_for(lambda: all(job_of(r.tenant["id"]).id != r.job.id and job_of(r.tenant["id"]).is_terminal
                         for r in forward), timeout=90, interval=0.1, message="the retries to end")
    for run in forward:
        check(run, check_the_retry, before_retry[run.case], job_of(run.tenant["id"]))
    assert not broken, f"{len(broken)} of {len(cases)} case(s) broke:\n\n" + "\n\n".join(
        f"{case}: {failure}" for case, failure in broken.items())


def test_a_failed_deprovisionings_status_names_what_is_left(dataplane, operator_client):
    (tenant,) = prepare(operator_client, PLANS["DEPROVISION:PROFESSIONAL"], 1)
    start_deprovision(tenant, faults={"RELEASE_CLUSTER_SLOT": {"mode": "permanent"}})
    wait_for_jobs([tenant], Kind.DEPROVISION)
    status = operator_client.get(f"/api/v1/tenants/{tenant['id']}/provisioning/status").json()
    assert (status["jobStatus"], status["status"]) == ("FAILED", "PENDING_DELETION")
    assert f"ClusterSlot {tenant['slug']}" in status["errorMessage"], status["errorMessage"]
