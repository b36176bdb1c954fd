"""Plans, backoff and the status's ETA: the rules the orchestrator and the status rely on."""
from __future__ import annotations

import io
from datetime import timedelta
from itertools import permutations

import pytest
from django.core.management import call_command
from django.utils import timezone

from provisioning import selectors
from provisioning.models import ProvisioningJob, StepRun
from provisioning.engine.runner import ensure_step_runs
from provisioning.engine.plans import PLANS, plan_for
from provisioning.engine.states import ALLOWED_TRANSITIONS, IllegalTransition, backoff_seconds, transition
from tenants.models import Tenant


@pytest.mark.parametrize("key", list(PLANS))
def test_every_order_of_success_makes_each_step_ready_exactly_once(key):
    """Whatever order a phase's parallel steps finish in, each step becomes ready once, in its phase."""
    plan = PLANS[key]
    for phase in plan.phases:
        names = [s.name for s in plan.steps_of(phase)]
        for order in list(permutations(names))[:120]:
            statuses = {name: "PENDING" for name in plan.step_names}
            made_ready: list[str] = []
            while True:
                ready = [n for n in plan.ready(phase, statuses) if n not in made_ready]
                running = [n for n in made_ready if statuses[n] == "RUNNING"]
                made_ready += ready
                for name in ready:
                    statuses[name] = "RUNNING"
                running += ready
                if not running:
                    break
                finishing = min(running, key=order.index)  # the next to finish, in this order
                statuses[finishing] = "SUCCEEDED"
            assert sorted(made_ready) == sorted(names), (key, phase, order)


def test_parallel_steps_wait_for_their_dependencies():
    plan = plan_for("PROFESSIONAL")
    statuses = {name: "PENDING" for name in plan.step_names}
    assert plan.ready("DEPLOYING_SERVICES", statuses) == [
        "SETUP_DATABASE", "DEPLOY_INGRESS_CONTROLLER", "CREATE_DNS_ZONE", "DEPLOY_MONITORING"]
    statuses.update(SETUP_DATABASE="SUCCEEDED", DEPLOY_INGRESS_CONTROLLER="RUNNING", CREATE_DNS_ZONE="RUNNING",
                    DEPLOY_MONITORING="RUNNING")
    assert plan.ready("DEPLOYING_SERVICES", statuses) == ["DEPLOY_CORE_SERVICES"]
    statuses.update(DEPLOY_CORE_SERVICES="SUCCEEDED", DEPLOY_INGRESS_CONTROLLER="SUCCEEDED")
    # CREATE_TENANT_INGRESS still waits for CREATE_DNS_ZONE.
    assert plan.ready("DEPLOYING_SERVICES", statuses) == ["DEPLOY_DATA_SERVICES"]
    statuses.update(CREATE_DNS_ZONE="SUCCEEDED")
    assert "CREATE_TENANT_INGRESS" in plan.ready("DEPLOYING_SERVICES", statuses)


def test_the_current_phase_is_the_first_with_a_step_not_succeeded():
    plan = plan_for("FREE")
    assert plan.position(set()).current == "VALIDATING_INPUT"
    first_three = {s.name for s in plan.steps if s.phase in plan.phases[:3]}
    position = plan.position(first_three | {"SETUP_DATABASE"})  # a later step does not move the phase
    assert (position.completed, position.current) == (plan.phases[:3], "CONFIGURING_QUOTAS")
    assert position.remaining == plan.phases[4:]
    assert plan.position(set(plan.step_names)).is_complete


def test_backoff_follows_the_ladder_with_bounded_jitter_and_honours_retry_after(settings):
    settings.MATIH_RETRY_BACKOFF = [60.0, 120.0, 240.0]
    settings.MATIH_RETRY_JITTER = 0.1
    for attempt, base in enumerate([60, 120, 240, 240]):
        delays = [backoff_seconds(attempt) for _ in range(200)]
        assert all(base * 0.9 <= d <= base * 1.1 for d in delays)
        assert len(set(delays)) > 1, "jittered"
    assert backoff_seconds(0, retry_after=500) == 500, "a longer Retry-After wins"
    assert 54 <= backoff_seconds(0, retry_after=5) <= 66, "a shorter one does not cut the backoff"


@pytest.mark.django_db(transaction=True)
def test_illegal_transitions_are_refused_and_lost_races_change_nothing(seeded, operator_client):
    from django.db import transaction as db_transaction

    from .helpers import register

    tenant = register(operator_client, tier="FREE")
    job = ProvisioningJob.objects.get(tenant_id=tenant["id"])
    with pytest.raises(IllegalTransition):
        with db_transaction.atomic():
            transition(job.id, from_=["COMPLETED"], to="RUNNING", event="x")
    with db_transaction.atomic():
        # Hold the row so that nothing else moves it while we look: only the CAS can.
        before = ProvisioningJob.objects.select_for_update().get(id=job.id)
        assert before.status != "RETRY_SCHEDULED"
        assert transition(job.id, from_=["RETRY_SCHEDULED"], to="RUNNING", event="x") is None
        after = ProvisioningJob.objects.get(id=job.id)
        assert (after.status, after.version) == (before.status, before.version)
    assert all(not ALLOWED_TRANSITIONS[s] for s in ("COMPLETED", "FAILED", "CANCELLED")), "terminal is terminal"


@pytest.mark.django_db
def test_eta_uses_medians_of_past_runs_once_there_are_enough(settings, operator_key):
    from billing.models import BillingPlan  # noqa: F401  (plans are seeded by the migration)
    from tenants.services import register_tenant

    settings.MATIH_SIM_TIME_SCALE = 1.0
    registration = register_tenant(name="Eta", slug="eta-test", tier="FREE", region="eastus",
                                   admin_email="a@eta.example.com")
    job = registration.job
    ensure_step_runs(job)
    ProvisioningJob.objects.filter(id=job.id).update(status="RUNNING", started_at=timezone.now())
    nominal = selectors.provisioning_status(Tenant.objects.get(id=registration.tenant.id))
    # Nothing ran yet: the critical path of nominal durations, phase after phase:
    # 1 + 1 + (2 + 17.5) + max(5, 20) + (75 + 180 + 20) + 15 = 331.5 s (the plain sum is 391.5 s).
    eta = timezone.now() + timedelta(seconds=331.5)
    assert abs((timezone.datetime.fromisoformat(nominal["estimatedCompletion"].replace("Z", "+00:00")) - eta)
               .total_seconds()) < 2

    # Five past runs of every step, 1 s each: the ETA follows the medians.
    now = timezone.now()
    for index in range(5):
        other_job = register_tenant(name=f"Past {index}", slug=f"eta-past-{index}", tier="FREE", region="eastus",
                                    admin_email=f"a{index}@past.example.com").job
        StepRun.objects.bulk_create([StepRun(job=other_job, name=s.name, phase=s.phase, position=p, status="SUCCEEDED",
                                             duration_ms=1000, finished_at=now, succeeded_at=now)
                                     for p, s in enumerate(plan_for("FREE").steps)])
    selectors.step_statistics(refresh=True)
    learned = selectors.provisioning_status(Tenant.objects.get(id=registration.tenant.id))
    remaining = (timezone.datetime.fromisoformat(learned["estimatedCompletion"].replace("Z", "+00:00"))
                 - timezone.now()).total_seconds()
    # Critical path of FREE with every step at 1 s: phases 1+1+2+1+2+1 = 8 s.
    assert 7 <= remaining <= 9, remaining


@pytest.mark.django_db
def test_sweep_command_reports_one_pass():
    out = io.StringIO()
    call_command("sweep", stdout=out)
    assert "resumed 0 due retries, 0 stalled, 0 rollback(s), 0 never dispatched" in out.getvalue()


@pytest.mark.django_db
def test_sweep_forgets_idempotent_answers_after_a_day(operator_client, monkeypatch):
    from tenants.models import IdempotencyRecord
    from tenants.services import IDEMPOTENCY_RETENTION

    monkeypatch.setattr("tenants.services._dispatch", lambda job_id: None)
    for slug in ("old-answer", "new-answer"):
        body = {"name": slug, "slug": slug, "tier": "FREE", "region": "eastus", "adminEmail": f"a@{slug}.example.com"}
        assert operator_client.post("/api/v1/tenants", body, format="json", HTTP_IDEMPOTENCY_KEY=slug).status_code == 201
    IdempotencyRecord.objects.filter(key="old-answer").update(
        created_at=timezone.now() - IDEMPOTENCY_RETENTION - timedelta(minutes=1))
    out = io.StringIO()
    call_command("sweep", stdout=out)
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["new-answer"]


@pytest.mark.django_db
def test_metrics_report_jobs_and_steps_from_the_database(client, operator_client, monkeypatch):
    monkeypatch.setattr("tenants.services._dispatch", lambda job_id: None)
    body = {"name": "Metrics", "slug": "metrics-one", "tier": "FREE", "region": "eastus",
            "adminEmail": "a@metrics.example.com"}
    assert operator_client.post("/api/v1/tenants", body, format="json").status_code == 201
    job = ProvisioningJob.objects.get(tenant__slug="metrics-one")
    ensure_step_runs(job)
    StepRun.objects.filter(job=job, name="VALIDATE_INPUT").update(
        status="SUCCEEDED", attempts=2, duration_ms=1500, finished_at=timezone.now(), succeeded_at=timezone.now())
    text = client.get("/metrics").content.decode()
    assert 'matih_provisioning_jobs{kind="PROVISION",status="PENDING",tier="FREE"} 1.0' in text
    assert 'matih_provisioning_step_attempts_total{status="SUCCEEDED",step="VALIDATE_INPUT"} 2.0' in text
    assert 'matih_provisioning_step_duration_seconds_sum{status="SUCCEEDED",step="VALIDATE_INPUT"} 1.5' in text
    assert "matih_http_requests_total" in text


@pytest.mark.django_db
def test_a_status_read_never_shows_an_ended_job_beside_the_tenant_before_its_end(operator_key):
    """The job FAILED and the tenant FAILED commit together; a caller holding the tenant as read
    before that commit (the watch, an API view) still gets the two as they were left together."""
    from tenants.services import register_tenant

    registration = register_tenant(name="Snap", slug="snap-test", tier="FREE", region="eastus",
                                   admin_email="a@snap.example.com")
    read_before = Tenant.objects.get(id=registration.tenant.id)
    assert read_before.status == "PROVISIONING"
    ProvisioningJob.objects.filter(id=registration.job.id).update(status="FAILED", error_message="boom")
    Tenant.objects.filter(id=registration.tenant.id).update(status="FAILED")

    status = selectors.provisioning_status(read_before)
    assert (status["jobStatus"], status["status"]) == ("FAILED", "FAILED")
