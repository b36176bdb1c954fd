"""What an operator meets in the simulated cloud: retries at the simulated pace, progress that moves
during a long step, a failed tenant that recovers by retry with its faults replaced, hints that tell
the truth. Real worker process, real PostgreSQL and Redis."""
from __future__ import annotations

import time

import pytest

from provisioning.engine.states import backoff_seconds
from provisioning.models import ProvisioningEvent, ProvisioningJob
from tenants.models import Tenant

from tests.harness import wait_for
from .helpers import job_of, register, status_of, terminal

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_simulated_clouds_backoff_runs_at_its_time_scale_but_never_below_a_second(settings):
    settings.MATIH_INFRA_BACKEND = "simulated"
    settings.MATIH_RETRY_BACKOFF = [60.0, 120.0, 240.0]
    settings.MATIH_RETRY_JITTER = 0.0
    assert [backoff_seconds(n, time_scale=0.01) for n in range(4)] == [1.0, 1.2, 2.4, 2.4]
    assert backoff_seconds(0, time_scale=None) == 60.0, "a real backend waits the real ladder"
    assert backoff_seconds(0, time_scale=0.5) == 30.0
    settings.MATIH_RETRY_BACKOFF = [0.4]
    assert backoff_seconds(0, time_scale=0.01) == 0.4, "a ladder already under a second is kept"
    assert backoff_seconds(0, retry_after=5, time_scale=0.01) == 5, "a provider's Retry-After still wins"


def test_a_retry_in_the_simulated_cloud_waits_the_backoff_at_the_jobs_time_scale(dataplane, operator_client):
    # The worker's ladder is the tests' 0.4, 0.8, 1.2 s; at time scale 2 the first wait is 0.8 s.
    tenant = register(operator_client, tier="FREE",
                      simulate={"timeScale": 2, "faults": {"VALIDATE_INPUT": {"mode": "transient", "times": 1}}})
    wait_for(lambda: job_of(tenant["id"]).status == "RETRY_SCHEDULED", timeout=30, message="the retry")
    job = job_of(tenant["id"])
    delay = ProvisioningEvent.objects.get(job=job, kind="job.retry_scheduled").data["delaySeconds"]
    assert delay == pytest.approx(0.8), f"0.4 s x 2 (jitter 0): {delay}"
    assert operator_client.post(f"/api/v1/tenants/{tenant['id']}/provisioning/cancel").status_code == 202
    wait_for(lambda: terminal(tenant["id"]), timeout=30, message="the cancel")


def test_progress_moves_during_a_long_step_and_never_goes_back(dataplane, operator_client):
    # TERRAFORM_APPLY's nominal 1200 s at this scale is 4.8 s: long enough to watch.
    tenant = register(operator_client, tier="ENTERPRISE", simulate={"timeScale": 0.004})
    seen: list[tuple[str, int]] = []
    while True:
        status = status_of(tenant["id"])
        running = [s["name"] for s in status["steps"] if s["status"] == "RUNNING"]
        seen.append((",".join(running), status["progress"]))
        if status["jobStatus"] in ("COMPLETED", "FAILED", "CANCELLED"):
            break
        assert len(seen) < 5000, "the job did not end"
        time.sleep(0.1)
    assert status["jobStatus"] == "COMPLETED"
    progress = [p for _, p in seen]
    assert progress == sorted(progress), f"progress went back: {progress}"
    during_apply = sorted({p for running, p in seen if running == "TERRAFORM_APPLY"})
    assert len(during_apply) >= 4, f"the bar moved while Terraform applied: {during_apply}"
    assert progress[-1] == 100


def test_a_tenant_failed_by_a_permanent_fault_recovers_by_retry_with_its_faults_replaced(
        dataplane, operator_client):
    tenant = register(operator_client, tier="FREE",
                      simulate={"faults": {"SETUP_DATABASE": {"mode": "permanent"}}})
    wait_for(lambda: terminal(tenant["id"]), timeout=60, message="the rollback to end")
    failed = Tenant.objects.get(id=tenant["id"])
    assert failed.status == "FAILED"
    assert f"/api/v1/tenants/{tenant['id']}/provisioning/retry" in failed.error_message
    assert '"faults": {}' in failed.error_message, "the hint says how to retry without the fault"
    assert "registration" not in failed.error_message.lower(), "no edit of the registration (there is none)"

    same = operator_client.post(f"/api/v1/tenants/{tenant['id']}/provisioning/retry")
    assert same.status_code == 202
    wait_for(lambda: terminal(tenant["id"]), timeout=60, message="the same failure")
    assert Tenant.objects.get(id=tenant["id"]).status == "FAILED", "a plain retry keeps the job's faults"

    cleared = operator_client.post(f"/api/v1/tenants/{tenant['id']}/provisioning/retry",
                                   {"simulate": {"faults": {}}}, format="json")
    assert cleared.status_code == 202, cleared.content
    wait_for(lambda: terminal(tenant["id"]), timeout=60, message="the new job to end")
    assert job_of(tenant["id"]).status == "COMPLETED"
    assert Tenant.objects.get(id=tenant["id"]).status == "ACTIVE"
    assert ProvisioningJob.objects.filter(tenant_id=tenant["id"]).count() == 3


def test_a_transient_fault_beyond_the_retry_budget_does_not_promise_to_clear(dataplane, sweeper, operator_client):
    tenant = register(operator_client, tier="FREE",
                      simulate={"faults": {"CONFIGURE_QUOTAS": {"mode": "transient", "times": 10}}})
    wait_for(lambda: job_of(tenant["id"]).status == "RETRY_SCHEDULED", timeout=30, message="a retry")
    message = job_of(tenant["id"]).error_message
    assert "clears on its own" not in message and "roll back" in message, message
    wait_for(lambda: terminal(tenant["id"]), timeout=60, message="the rollback")
    assert job_of(tenant["id"]).status == "FAILED"


def test_retry_of_a_job_waiting_for_its_retry_replaces_its_faults_and_resumes_now(dataplane, operator_client):
    tenant = register(operator_client, tier="FREE",
                      simulate={"faults": {"CONFIGURE_NETWORKING": {"mode": "transient", "times": 50}}})
    wait_for(lambda: job_of(tenant["id"]).status == "RETRY_SCHEDULED", timeout=30, message="a retry")
    answer = operator_client.post(f"/api/v1/tenants/{tenant['id']}/provisioning/retry",
                                  {"simulate": {"faults": {}}}, format="json")
    assert answer.status_code == 202 and answer.json()["jobStatus"] == "RUNNING"
    wait_for(lambda: terminal(tenant["id"]), timeout=30, message="the job to end")
    job = job_of(tenant["id"])
    assert job.status == "COMPLETED" and job.context["simulate"] == {"faults": {}}
    assert ProvisioningJob.objects.filter(tenant_id=tenant["id"]).count() == 1, "the same job resumed"
    tenant_key = operator_client.__class__()
    tenant_key.credentials(HTTP_AUTHORIZATION=f"Bearer {tenant['adminApiKey']}")
    refused = tenant_key.post(f"/api/v1/tenants/{tenant['id']}/provisioning/retry", {"simulate": {"faults": {}}},
                              format="json")
    assert refused.status_code == 400 and "simulate" in refused.json()["fields"], "operators only"
