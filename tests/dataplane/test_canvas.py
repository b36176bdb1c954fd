"""The canvas as a Celery user sees it: one run_phase task per phase, chained; duplicates and
resumptions run nothing twice. Real worker process, real PostgreSQL and Redis."""
from __future__ import annotations

import os
import re
import signal
import threading

import pytest
from celery.signals import before_task_publish

from deploy.models import SimulatedResource
from provisioning.engine import resume as resume_module
from provisioning.engine import runner
from provisioning.engine.canvas import phase_canvas
from provisioning.engine.outcomes import OUTCOMES
from provisioning.engine.plans import plan_for
from provisioning.engine.states import ALLOWED_TRANSITIONS, SQL_TRANSITIONS, sql_transition
from provisioning.models import ProvisioningEvent, StepRun
from tenants.models import Tenant

from tests.harness import wait_for
from .helpers import job_of, register, terminal
from .test_orchestrator import EXPECTED_PROFESSIONAL_RESOURCES, _resource_counts

pytestmark = pytest.mark.django_db(transaction=True)


class Published:
    """Every task message this process publishes: (task name, args, the chain after it)."""

    def __init__(self):
        self.messages: list[tuple[str, list, list[tuple[str, list]]]] = []
        self._lock = threading.Lock()

    def __call__(self, sender=None, body=None, headers=None, **_):
        args, _kwargs, embed = body
        chain = [(sig["task"], list(sig["args"])) for sig in reversed((embed or {}).get("chain") or [])]
        with self._lock:
            self.messages.append((headers["task"], list(args), chain))

    def chains_of(self, job_id: str) -> list[list[tuple[str, list]]]:
        """Each chain published for the job, as its whole list of (task, args)."""
        with self._lock:
            return [[(name, args), *chain] for name, args, chain in self.messages
                    if args and str(args[0]) == str(job_id)]


@pytest.fixture
def published():
    recorder = Published()
    before_task_publish.connect(recorder, weak=False)
    yield recorder
    before_task_publish.disconnect(recorder)


@pytest.mark.parametrize("tier", ["FREE", "PROFESSIONAL", "ENTERPRISE"])
def test_a_registration_sends_one_chain_of_phase_tasks_in_plan_order(dataplane, published, operator_client, tier):
    tenant = register(operator_client, tier=tier)
    job = job_of(tenant["id"])
    chains = published.chains_of(job.id)
    assert len(chains) == 1, chains
    expected = [("provisioning.run_phase", [str(job.id), phase]) for phase in plan_for(tier).phases]
    assert chains[0] == expected, "one run_phase per phase of the tier's plan, in order, linked; no task per step"
    wait_for(lambda: terminal(tenant["id"]), timeout=60, message="the job to end")
    assert job_of(tenant["id"]).status == "COMPLETED"
    step_tasks = [name for name, _, _ in published.messages if name not in ("provisioning.run_phase",
                                                                            "provisioning.notify_job_finished")]
    assert step_tasks == [], "nothing but the chain was sent"


def test_a_transient_failure_in_configuring_quotas_resumes_the_chain_at_that_phase(
        dataplane, sweeper, published, operator_client):
    tenant = register(operator_client, tier="FREE",
                      simulate={"faults": {"CONFIGURE_NETWORKING": {"mode": "transient", "times": 1}}})
    wait_for(lambda: terminal(tenant["id"]), timeout=60, message="the job to end")
    job = job_of(tenant["id"])
    assert job.status == "COMPLETED" and job.retry_count == 1
    phases = list(plan_for("FREE").phases)
    chains = published.chains_of(job.id)
    assert [c[0][1][1] for c in chains] == ["VALIDATING_INPUT", "CONFIGURING_QUOTAS"], chains
    assert [args[1] for _, args in chains[1]] == phases[phases.index("CONFIGURING_QUOTAS"):], \
        "the resumed chain starts at the failed phase; finished phases are not sent again"
    attempts = dict(StepRun.objects.filter(job=job).values_list("name", "attempts"))
    assert attempts.pop("CONFIGURE_NETWORKING") == 2
    assert set(attempts.values()) == {1}, f"nothing else ran twice, not even the failed step's sibling: {attempts}"


def test_a_phase_delivered_twice_at_once_runs_each_step_once(dataplane, operator_client, monkeypatch):
    monkeypatch.setattr("tenants.services._dispatch", lambda job: None)  # we send the canvas ourselves
    tenant = register(operator_client, tier="PROFESSIONAL", simulate={"timeScale": 0.002})
    job = job_of(tenant["id"])
    canvas = phase_canvas(job.id, plan_for("PROFESSIONAL"))
    canvas.clone().apply_async()
    canvas.clone().apply_async()  # every phase delivered twice, at once (2 worker processes)
    wait_for(lambda: terminal(tenant["id"]), timeout=60, message="the job to end")
    job = job_of(tenant["id"])
    assert job.status == "COMPLETED"
    assert set(StepRun.objects.filter(job=job).values_list("attempts", flat=True)) == {1}
    started = list(ProvisioningEvent.objects.filter(job=job, kind="step.started").values_list("step", flat=True))
    assert sorted(started) == sorted(plan_for("PROFESSIONAL").step_names), "each step started once"
    assert _resource_counts(tenant["slug"]) == EXPECTED_PROFESSIONAL_RESOURCES
    assert Tenant.objects.get(id=tenant["id"]).status == "ACTIVE"


def test_worker_killed_while_a_phases_parallel_steps_run_the_job_completes_making_everything_once(
        dataplane, sweeper, operator_client):
    tenant = register(operator_client, tier="PROFESSIONAL", simulate={"timeScale": 0.01})
    job = job_of(tenant["id"])
    running = wait_for(
        lambda: (lambda rows: rows if len(rows) >= 2 else None)(
            list(StepRun.objects.filter(job=job, phase="DEPLOYING_SERVICES", status="RUNNING"))),
        timeout=30, interval=0.005, message="two DEPLOYING_SERVICES steps running side by side")
    pids = {int(step.claimed_by.split(":")[1]) for step in running}
    assert len(pids) == 1, "a phase's steps run in one process, in threads"
    pid = pids.pop()
    assert pid in dataplane.children()
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: terminal(tenant["id"]), timeout=90, message="the job to end")
    assert job_of(tenant["id"]).status == "COMPLETED"
    killed = {step.name for step in running}
    attempts = dict(StepRun.objects.filter(job=job).values_list("name", "attempts"))
    assert all(attempts[name] == 2 for name in killed), attempts  # the killed steps ran again, once
    assert all(count == 1 for name, count in attempts.items() if name not in killed and name.startswith(
        ("VALIDATE", "CONFIRM", "SELECT", "CREATE_NAMESPACE", "CONFIGURE"))), attempts
    assert _resource_counts(tenant["slug"]) == EXPECTED_PROFESSIONAL_RESOURCES, "every resource made once"
    wait_for(lambda: len(dataplane.children()) == 2, timeout=10, message="the pool to replace its child")


# --- the job statuses of the engine's SQL are the state table's --------------------------------------------

_JOB_UPDATE = re.compile(r"UPDATE provisioning_provisioningjob SET (?P<set>.*?) WHERE (?P<where>.*?)(?:RETURNING|\Z)",
                         re.S)
_SET_STATUS = re.compile(r"(?<![\w.])status = (?:'(?P<literal>[A-Z_]+)'|(?P<case>CASE .*? END))", re.S)
_CASE_ARM = re.compile(r"WHEN status = '([A-Z_]+)' THEN '([A-Z_]+)'")
_WHERE_STATUS = re.compile(r"(?<![\w.])status (?:= '([A-Z_]+)'|IN \(([^)]*)\))")


def _job_status_writes(sql: str) -> list[tuple[str, str]]:
    """(from, to) for every job-status write in a statement: SET status = 'X' ... WHERE status IN (...)."""
    pairs = []
    for update in _JOB_UPDATE.finditer(sql):
        written = _SET_STATUS.search(update["set"])
        if written is None:
            continue
        if written["case"]:
            pairs += _CASE_ARM.findall(written["case"])
            continue
        where = _WHERE_STATUS.search(update["where"])
        assert where is not None, f"a status write without the status it expects: {update.group(0)}"
        sources = [where[1]] if where[1] else re.findall(r"'([A-Z_]+)'", where[2])
        pairs += [(source, written["literal"]) for source in sources]
    return pairs


def test_every_job_status_the_engines_sql_writes_is_a_transition_of_the_state_table():
    statements = [runner.START_AND_LOAD_SQL, runner.CLAIM_SQL, runner.SUCCEED_SQL, runner.SUCCEED_AND_CLAIM_SQL,
                  *[runner.complete_sql(outcome.completed(slug="acme", tier="FREE")) for outcome in OUTCOMES.values()],
                  resume_module.resume_sql([resume_module.RETRY_DUE]),
                  resume_module.resume_sql([resume_module.STILL_RUNNING, resume_module.STILL_ROLLING_BACK,
                                            resume_module.STILL_CANCELLING])]
    writes = [pair for sql in statements for pair in _job_status_writes(sql)]
    assert ("PENDING", "RUNNING") in writes and ("RUNNING", "COMPLETED") in writes \
        and ("RETRY_SCHEDULED", "RUNNING") in writes, writes
    illegal = [(a, b) for a, b in writes if b not in ALLOWED_TRANSITIONS[a]]
    assert illegal == [], illegal
    assert all(b in ALLOWED_TRANSITIONS[a] for a, b in SQL_TRANSITIONS), "every rendered transition is allowed"


def test_a_transition_the_table_does_not_allow_cannot_be_rendered():
    from provisioning.engine.states import IllegalTransition

    with pytest.raises(IllegalTransition):
        sql_transition(["COMPLETED"], "RUNNING")
    assert _job_status_writes(
        "UPDATE provisioning_provisioningjob SET status = 'RUNNING' WHERE id = 1 AND status = 'FAILED'") \
        == [("FAILED", "RUNNING")], "the scan reads what a hand-written status would say"


def test_a_job_whose_worker_died_before_completing_it_is_completed_by_its_last_phase(seeded, operator_client,
                                                                                      monkeypatch):
    """Its last step committed, then its worker died: the sweeper's canvas, from the last phase, completes it."""
    from django.utils import timezone

    from provisioning.engine.sweeper import sweep
    from provisioning.models import ProvisioningJob
    from tests.engine_local import LocalCanvas

    canvas = LocalCanvas(monkeypatch)
    tenant = register(operator_client, tier="FREE")
    job = job_of(tenant["id"])
    with monkeypatch.context() as patched:
        patched.setattr(runner, "complete_job", lambda loaded: False)  # the worker dies here
        canvas.run()
    job.refresh_from_db()
    assert job.status == "RUNNING" and set(job.succeeded_steps) == set(plan_for("FREE").step_names)
    ProvisioningJob.objects.filter(id=job.id).update(lease_expires_at=timezone.now() - timezone.timedelta(seconds=1))
    report = sweep()
    assert report.stalled == [str(job.id)]
    assert canvas.sent[-1] == ("run", str(job.id), ["VERIFYING_CONNECTIVITY"])
    canvas.run()
    assert job_of(tenant["id"]).status == "COMPLETED"
    assert Tenant.objects.get(id=tenant["id"]).status == "ACTIVE"
    assert SimulatedResource.objects.filter(owner=tenant["slug"], kind="Namespace").count() == 1
