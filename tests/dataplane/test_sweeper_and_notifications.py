"""The sweeper, the retry/cancel API and the notifications."""
from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from provisioning.engine import sweeper as sweeper_module
from provisioning.models import ProvisioningEvent, ProvisioningJob, StepRun, WebhookDelivery
from provisioning.notifications import verify
from provisioning.engine.runner import ensure_step_runs
from tenants.models import Tenant

from tests.harness import ROOT, wait_for, worker_env
from .helpers import job_of, register, terminal

pytestmark = pytest.mark.django_db(transaction=True)


def _due_jobs(client, count: int) -> list[str]:
    """Jobs that failed a step and whose retry is due, made through the real API and orchestrator states."""
    from provisioning.models import JobStatus

    ids = []
    for _ in range(count):
        tenant = register(client, tier="FREE")
        job = job_of(tenant["id"])
        ensure_step_runs(job)
        StepRun.objects.filter(job=job, name="VALIDATE_INPUT").update(status="FAILED", attempts=1)
        ProvisioningJob.objects.filter(id=job.id).update(
            status=JobStatus.RETRY_SCHEDULED, retry_count=1, next_retry_at=timezone.now() - timedelta(seconds=1))
        ids.append(str(job.id))
    return ids


def test_two_sweepers_resume_every_due_job_exactly_once(seeded, operator_client, monkeypatch):
    monkeypatch.setattr("tenants.services._dispatch", lambda job_id: None)  # keep the jobs still
    due = _due_jobs(operator_client, 40)
    sent = []
    monkeypatch.setattr("provisioning.engine.resume.send_phases",
                        lambda job_id, plan, from_phase=None: sent.append((str(job_id), from_phase)))
    barrier = threading.Barrier(2)
    reports = []

    def run():
        try:
            barrier.wait()
            reports.append(sweeper_module.sweep())
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    resumed = [job_id for report in reports for job_id in report.retried]
    assert sorted(resumed) == sorted(due), "every due job resumed, none twice"
    assert sorted(sent) == sorted((job_id, "VALIDATING_INPUT") for job_id in due), \
        "one canvas per job, from the phase of its failed step"
    assert ProvisioningEvent.objects.filter(kind="job.resumed").count() == len(due)
    assert set(ProvisioningJob.objects.filter(id__in=due).values_list("status", flat=True)) == {"RUNNING"}
    assert not StepRun.objects.filter(job_id__in=due, status="FAILED").exists(), "failed steps are PENDING again"


def test_sweeper_resumes_from_failed_step_after_backoff(dataplane, sweeper, operator_client):
    tenant = register(operator_client, tier="FREE",
                      simulate={"faults": {"CONFIGURE_NETWORKING": {"mode": "transient", "times": 1}}})
    wait_for(lambda: terminal(tenant["id"]), timeout=30, message="the job to end")
    job = job_of(tenant["id"])
    assert job.status == "COMPLETED" and job.retry_count == 1
    kinds = list(ProvisioningEvent.objects.filter(job=job).order_by("seq").values_list("kind", flat=True))
    assert kinds.index("job.retry_scheduled") < kinds.index("job.resumed") < kinds.index("job.completed")
    assert StepRun.objects.get(job=job, name="CONFIGURE_QUOTAS").attempts == 1


def test_job_never_dispatched_is_started_by_the_sweeper(dataplane, operator_client, monkeypatch):
    monkeypatch.setattr("tenants.services._dispatch", lambda job_id: None)  # the broker "was down"
    tenant = register(operator_client, tier="FREE")
    job = job_of(tenant["id"])
    time.sleep(0.5)
    assert job_of(tenant["id"]).status == "PENDING"
    ProvisioningJob.objects.filter(id=job.id).update(created_at=timezone.now() - timedelta(minutes=5))
    report = sweeper_module.sweep()
    assert report.undispatched == [str(job.id)]
    wait_for(lambda: terminal(tenant["id"]), timeout=30, message="the job to end")
    assert job_of(tenant["id"]).status == "COMPLETED"


def test_retry_now_and_restart_through_the_api(dataplane, operator_client, fast_settings):
    fast_settings.MATIH_RETRY_BACKOFF = [3600.0]
    tenant = register(operator_client, tier="FREE",
                      simulate={"faults": {"CREATE_NAMESPACE": {"mode": "transient", "times": 1}}})
    wait_for(lambda: job_of(tenant["id"]).status == "RETRY_SCHEDULED", timeout=30, message="RETRY_SCHEDULED")
    status = operator_client.get(f"/api/v1/tenants/{tenant['id']}/provisioning/status").json()
    assert status["nextRetryAt"] is not None and status["retryCount"] == 1
    response = operator_client.post(f"/api/v1/tenants/{tenant['id']}/provisioning/retry")
    assert response.status_code == 202
    wait_for(lambda: terminal(tenant["id"]), timeout=30, message="the job to end")
    assert job_of(tenant["id"]).status == "COMPLETED"
    assert operator_client.post(f"/api/v1/tenants/{tenant['id']}/provisioning/retry").status_code == 409

    failed = register(operator_client, tier="FREE",
                      simulate={"faults": {"CREATE_NAMESPACE": {"mode": "permanent"}}})
    wait_for(lambda: terminal(failed["id"]), timeout=30, message="the rollback")
    first_job = job_of(failed["id"])
    assert first_job.status == "FAILED"
    response = operator_client.post(f"/api/v1/tenants/{failed['id']}/provisioning/retry")
    assert response.status_code == 202
    jobs = operator_client.get(f"/api/v1/tenants/{failed['id']}/provisioning/jobs").json()["results"]
    assert len(jobs) == 2 and jobs[1]["id"] == str(first_job.id), "a new job, newest first"
    wait_for(lambda: terminal(failed["id"]), timeout=30, message="the second job")
    assert Tenant.objects.get(id=failed["id"]).status == "FAILED", "the fault is permanent: it fails again"
    events = operator_client.get(f"/api/v1/tenants/{failed['id']}/provisioning/events?after=2").json()
    assert all(e["seq"] > 2 for e in events["results"]) and events["results"]
    assert operator_client.get(f"/api/v1/tenants/{failed['id']}/provisioning/events?after=x").status_code == 400


class _Receiver(http.server.BaseHTTPRequestHandler):
    requests: list = []
    failures_left: dict = {}

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).requests.append((self.path, dict(self.headers), body))
        left = type(self).failures_left.get(self.path, 0)
        if left:
            type(self).failures_left[self.path] = left - 1
            self.send_response(500)
        else:
            self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_webhooks_are_signed_and_a_failing_endpoint_never_blocks_the_job(dataplane, operator_client,
                                                                         test_output_dir):
    _Receiver.requests = []
    _Receiver.failures_left = {"/flaky": 2, "/down": 10**6}
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    hooks = [{"url": f"{base}/ok", "secret": "whsec-ok"}, {"url": f"{base}/flaky", "secret": "whsec-flaky"},
             {"url": f"{base}/down", "secret": "whsec-down"}]
    try:
        tenant = register(operator_client, tier="FREE", settings={"notifications": {"email": True, "webhooks": hooks}})
        wait_for(lambda: terminal(tenant["id"]), timeout=30, message="the job to end")
        job = job_of(tenant["id"])
        assert job.status == "COMPLETED"
        wait_for(lambda: WebhookDelivery.objects.filter(job=job).exclude(status__in=["PENDING", "RETRYING"]).count() == 3,
                 timeout=30, message="every delivery to settle")
    finally:
        server.shutdown()
    deliveries = {d.url.rsplit("/", 1)[1]: d for d in WebhookDelivery.objects.filter(job=job)}
    assert deliveries["ok"].status == "DELIVERED" and deliveries["ok"].attempts == 1
    assert deliveries["flaky"].status == "DELIVERED" and deliveries["flaky"].attempts == 3
    assert deliveries["down"].status == "GAVE_UP" and deliveries["down"].last_status_code == 500
    assert deliveries["down"].attempts == 6
    assert job.completed_at < deliveries["flaky"].delivered_at, "the job did not wait for its webhooks"
    secrets = {"/ok": "whsec-ok", "/flaky": "whsec-flaky", "/down": "whsec-down"}
    for path, headers, body in _Receiver.requests:
        assert verify(secrets[path], headers["X-Matih-Timestamp"], body, headers["X-Matih-Signature"])
        assert not verify("another-secret", headers["X-Matih-Timestamp"], body, headers["X-Matih-Signature"])
        assert json.loads(body)["event"] == "provisioning.completed"
    mails = list((test_output_dir / "mail").glob("*.log"))
    assert any(f"admin@{tenant['slug']}.example.com" in m.read_text() for m in mails), "the admin got an email"


def test_beat_runs_the_sweeper_from_its_periodic_task(dataplane, operator_client, monkeypatch, test_output_dir):
    from django_celery_beat.models import IntervalSchedule, PeriodicTask, PeriodicTasks

    from provisioning.seed import SWEEP_TASK, ensure_sweep_periodic_task

    ensure_sweep_periodic_task(IntervalSchedule, PeriodicTask, PeriodicTasks)  # the migration's data, re-seeded
    task = PeriodicTask.objects.get(task=SWEEP_TASK)
    assert task.enabled and task.interval.every == 1 and task.interval.period == "seconds"
    monkeypatch.setattr("tenants.services._dispatch", lambda job_id: None)
    tenant = register(operator_client, tier="FREE")
    ProvisioningJob.objects.filter(tenant_id=tenant["id"]).update(created_at=timezone.now() - timedelta(minutes=5))
    log = (test_output_dir / "celery-beat.log").open("wb")
    beat = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "matih", "beat", "-l", "info", "--pidfile=",
         "--scheduler", "django_celery_beat.schedulers:DatabaseScheduler"],
        cwd=ROOT, env=worker_env(), stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: terminal(tenant["id"]), timeout=45, message="beat's sweep to start the job")
    finally:
        beat.terminate()
        beat.wait(10)
    assert job_of(tenant["id"]).status == "COMPLETED"
    assert ProvisioningEvent.objects.filter(kind="job.dispatched").exists()
