"""The data plane end to end: real worker process, real PostgreSQL and Redis, simulated cloud."""
from __future__ import annotations

import os
import signal
import time

import pytest

from deploy.models import ClusterSlot, SimulatedResource
from provisioning.models import ProvisioningEvent, StepRun
from provisioning.engine.plans import plan_for
from tenants.models import Tenant

from tests.harness import wait_for
from .helpers import assert_phases_consistent, job_of, register, status_of, terminal

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("tier, scale", [("FREE", 0.003), ("PROFESSIONAL", 0.002), ("ENTERPRISE", 0.001)])
def test_each_tier_completes_and_phases_follow_the_seed_order(dataplane, operator_client, tier, scale):
    tenant = register(operator_client, tier=tier, simulate={"timeScale": scale})
    observed, seen_phases = [], []
    while True:
        status = status_of(tenant["id"])
        observed.append(status)
        if not seen_phases or seen_phases[-1] != status["currentPhase"]:
            seen_phases.append(status["currentPhase"])
        if status["jobStatus"] in ("COMPLETED", "FAILED", "CANCELLED"):
            break
        assert len(observed) < 20000, "the job did not finish"
        time.sleep(0.01)

    assert status["jobStatus"] == "COMPLETED"
    assert Tenant.objects.get(id=tenant["id"]).status == "ACTIVE"
    for snapshot in observed:
        assert_phases_consistent(snapshot, tier)
        assert snapshot["progress"] < 100 or snapshot["jobStatus"] == "COMPLETED"
    progress = [snapshot["progress"] for snapshot in observed]
    assert progress == sorted(progress), "progress never decreases"
    assert progress[-1] == 100
    phases = list(plan_for(tier).phases) + ["COMPLETED"]
    assert seen_phases == [p for p in phases if p in seen_phases], "phases are seen in the seed's order"
    assert len(seen_phases) >= 3, f"too few phases observed to mean anything: {seen_phases}"
    record = Tenant.objects.get(id=tenant["id"])
    assert record.kubernetes_namespace == f"tenant-{record.slug}"
    assert record.deployment_type == ("DEDICATED" if tier == "ENTERPRISE" else "SHARED")
    assert record.provisioned_at is not None
    assert all(step["status"] == "SUCCEEDED" and step["attempts"] == 1 for step in status["steps"])


def test_transient_failure_twice_retries_from_the_failed_step(dataplane, sweeper, operator_client):
    tenant = register(operator_client, tier="PROFESSIONAL",
                      simulate={"faults": {"CREATE_DNS_ZONE": {"mode": "transient", "times": 2}}})
    retry_times = []

    def watch():
        status = status_of(tenant["id"])
        if status["jobStatus"] == "RETRY_SCHEDULED" and status["nextRetryAt"] not in retry_times:
            retry_times.append(status["nextRetryAt"])
        return status["jobStatus"] in ("COMPLETED", "FAILED") and status

    final = wait_for(watch, timeout=60, interval=0.02, message="the job to end")
    assert final["jobStatus"] == "COMPLETED"
    assert final["retryCount"] == 2
    assert len(retry_times) == 2 and retry_times[0] < retry_times[1]
    delays = [e.data["delaySeconds"] for e in ProvisioningEvent.objects.filter(
        job_id=final["jobId"], kind="job.retry_scheduled").order_by("seq")]
    assert delays == [0.4, 0.8], "the backoff grows"
    steps = {s["name"]: s for s in final["steps"]}
    assert steps["CREATE_DNS_ZONE"]["attempts"] == 3
    before_failure = [s for s in plan_for("PROFESSIONAL").steps if s.phase != "DEPLOYING_SERVICES"
                      and s.phase != "VERIFYING_CONNECTIVITY"]
    assert all(steps[s.name]["attempts"] == 1 for s in before_failure), "succeeded steps were not run again"
    assert Tenant.objects.get(id=tenant["id"]).status == "ACTIVE"


def _assert_rolled_back(tenant: dict, final_job_status: str = "FAILED") -> None:
    slug = tenant["slug"]
    job = job_of(tenant["id"])
    assert job.status == final_job_status
    assert not SimulatedResource.objects.filter(owner=slug).exists(), \
        list(SimulatedResource.objects.filter(owner=slug).values_list("kind", "name"))
    assert not ClusterSlot.objects.filter(tenant_key=slug).exists()
    record = Tenant.objects.get(id=tenant["id"])
    assert record.status == "FAILED"
    compensated = [e.step for e in ProvisioningEvent.objects.filter(job=job, kind="step.compensated").order_by("seq")]
    positions = dict(StepRun.objects.filter(job=job).values_list("name", "position"))
    assert compensated, "something was undone"
    assert [positions[name] for name in compensated] == sorted((positions[n] for n in compensated), reverse=True), \
        "compensations run in reverse order"
    assert all(s.status in ("COMPENSATED", "PENDING", "SUCCEEDED") for s in StepRun.objects.filter(job=job)
               if s.status != "FAILED")


def test_permanent_failure_rolls_back_everything(dataplane, operator_client):
    tenant = register(operator_client, tier="PROFESSIONAL",
                      simulate={"faults": {"DEPLOY_DATA_SERVICES": {"mode": "permanent"}}})
    seen = set()

    def watch():
        job = job_of(tenant["id"])
        seen.add(job.status)
        return job.is_terminal

    wait_for(watch, timeout=60, interval=0.01, message="the rollback to end")
    assert "ROLLING_BACK" in seen or ProvisioningEvent.objects.filter(kind="job.rolling_back").exists()
    _assert_rolled_back(tenant)
    message = Tenant.objects.get(id=tenant["id"]).error_message
    assert "DEPLOY_DATA_SERVICES" in message and "provider said" in message and "hint" in message
    assert job_of(tenant["id"]).retry_count == 0, "a permanent error is not retried"


def test_exhausted_retries_roll_back(dataplane, sweeper, operator_client):
    tenant = register(operator_client, tier="FREE",
                      simulate={"faults": {"SETUP_DATABASE": {"mode": "transient", "times": 99}}})
    wait_for(lambda: terminal(tenant["id"]), timeout=60, message="the job to end")
    job = job_of(tenant["id"])
    assert job.retry_count == 3
    assert "retries exhausted" in job.error_message
    assert StepRun.objects.get(job=job, name="SETUP_DATABASE").attempts == 4
    _assert_rolled_back(tenant)


def test_cancel_while_running_undoes_everything(dataplane, operator_client):
    tenant = register(operator_client, tier="PROFESSIONAL", simulate={"timeScale": 0.01})
    wait_for(lambda: status_of(tenant["id"])["currentPhase"] == "DEPLOYING_SERVICES", timeout=30,
             message="DEPLOYING_SERVICES")
    response = operator_client.post(f"/api/v1/tenants/{tenant['id']}/provisioning/cancel")
    assert response.status_code == 202, response.content
    assert response.json()["jobStatus"] == "CANCELLING"
    wait_for(lambda: terminal(tenant["id"]), timeout=30, message="the cancel to end")
    _assert_rolled_back(tenant, final_job_status="CANCELLED")
    again = operator_client.post(f"/api/v1/tenants/{tenant['id']}/provisioning/cancel")
    assert again.status_code == 409


EXPECTED_PROFESSIONAL_RESOURCES = {
    "Namespace": 1, "ServiceAccount": 1, "Role": 1, "RoleBinding": 1, "ResourceQuota": 1, "LimitRange": 1,
    "NetworkPolicy": 5, "DatabaseRole": 1, "DatabaseSchema": 1, "Secret": 1, "HelmRelease": 4,
    "Deployment": 5, "StatefulSet": 1,
    "DnsZone": 1, "DnsDelegation": 1, "DnsRecord": 4, "Ingress": 1, "LogPipeline": 1, "TracePipeline": 1,
}


def _resource_counts(slug: str) -> dict:
    counts: dict = {}
    for kind in SimulatedResource.objects.filter(owner=slug).values_list("kind", flat=True):
        counts[kind] = counts.get(kind, 0) + 1
    return counts


def test_worker_killed_mid_step_the_job_still_completes(dataplane, sweeper, operator_client):
    tenant = register(operator_client, tier="PROFESSIONAL", simulate={"timeScale": 0.01})
    job = job_of(tenant["id"])
    running = wait_for(
        lambda: StepRun.objects.filter(job=job, name="DEPLOY_CORE_SERVICES", status="RUNNING").first(),
        timeout=30, interval=0.01, message="DEPLOY_CORE_SERVICES to run")
    pid = int(running.claimed_by.split(":")[1])
    assert pid in dataplane.children()
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: terminal(tenant["id"]), timeout=60, message="the job to end")
    assert job_of(tenant["id"]).status == "COMPLETED"
    step = StepRun.objects.get(job=job, name="DEPLOY_CORE_SERVICES")
    assert step.attempts == 2, "the killed step ran again, once"
    assert _resource_counts(tenant["slug"]) == EXPECTED_PROFESSIONAL_RESOURCES
    wait_for(lambda: len(dataplane.children()) == 2, timeout=10, message="the pool to replace its child")


def test_redis_wiped_while_twenty_tenants_provision(dataplane, sweeper, operator_client):
    import redis
    from django.conf import settings

    tenants = [register(operator_client, tier=tier, simulate={"timeScale": 0.004})
               for tier in ["FREE", "PROFESSIONAL"] * 10]
    time.sleep(0.8)
    redis.Redis.from_url(settings.REDIS_URL).flushall()
    wait_for(lambda: all(terminal(t["id"]) for t in tenants), timeout=120, interval=0.2,
             message="all 20 jobs to end")
    statuses = {job_of(t["id"]).status for t in tenants}
    assert statuses == {"COMPLETED"}
    recovered = ProvisioningEvent.objects.filter(kind__in=["job.recovered", "job.dispatched"]).count()
    assert recovered >= 1, "the wipe lost messages and the sweeper recovered them"
    for t in tenants:
        expected = EXPECTED_PROFESSIONAL_RESOURCES if t["tier"] == "PROFESSIONAL" else None
        if expected:
            assert _resource_counts(t["slug"]) == expected
