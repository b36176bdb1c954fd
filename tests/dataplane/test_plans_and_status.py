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


@pytest.mark.parametrize("tier", list(PLANS))
def test_every_order_of_success_sends_each_step_exactly_once(tier):
    """Whatever order parallel steps finish in, each step becomes ready exactly once."""
    plan = plan_for(tier)
    deploying = [s.name for s in plan.steps if s.phase == "DEPLOYING_SERVICES"]
    for order in list(permutations(deploying))[:200]:
        succeeded: set[str] = set()
        sent = [s.name for s in plan.steps if plan.is_ready(s, set())]
        queue = list(sent)
        # Run the plan, finishing the deploying steps in `order` whenever they are ready.
        while queue:
            ready_now = sorted(queue, key=lambda n: order.index(n) if n in order else -1)
            name = ready_now[0]
            queue.remove(name)
            succeeded.add(name)
            new = plan.newly_ready(succeeded, name)
            sent += new
            queue += new
        assert sorted(sent) == sorted(plan.step_names), "every step sent once"
        assert succeeded == set(plan.step_names)


def test_parallel_steps_wait_for_their_dependencies():
    plan = plan_for("PROFESSIONAL")
    before_deploy = {s.name for s in plan.steps if s.phase not in ("DEPLOYING_SERVICES", "VERIFYING_CONNECTIVITY")}
    ready = [s.name for s in plan.steps if s.name not in before_deploy and plan.is_ready(s, before_deploy)]
    assert ready == ["SETUP_DATABASE", "DEPLOY_INGRESS_CONTROLLER", "CREATE_DNS_ZONE", "DEPLOY_MONITORING"]
    assert plan.newly_ready(before_deploy | {"SETUP_DATABASE"}, "SETUP_DATABASE") == ["DEPLOY_CORE_SERVICES"]
    done = before_deploy | {"SETUP_DATABASE", "DEPLOY_CORE_SERVICES", "DEPLOY_INGRESS_CONTROLLER"}
    assert plan.newly_ready(done, "DEPLOY_INGRESS_CONTROLLER") == []  # CREATE_DNS_ZONE is still missing
    assert plan.newly_ready(done | {"CREATE_DNS_ZONE"}, "CREATE_DNS_ZONE") == ["CREATE_TENANT_INGRESS"]


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
    assert 'matih_provisioning_jobs{status="PENDING",tier="FREE"} 1.0' in text
    assert 'matih_provisioning_step_attempts_total{status="SUCCEEDED",step="VALIDATE_INPUT"} 2.0' in text
    assert 'matih_provisioning_step_duration_seconds_sum{status="SUCCEEDED",step="VALIDATE_INPUT"} 1.5' in text
    assert "matih_http_requests_total" in text
