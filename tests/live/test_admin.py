"""The admin as the provisioning dashboard: pages, actions and buttons (in-process, Django's test client)."""
from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from iam.services import operator_get_or_create
from provisioning.models import ProvisioningEvent, ProvisioningJob, StepRun
from provisioning.engine.plans import plan_for

from .helpers import quiet_tenant

pytestmark = pytest.mark.django_db(transaction=True)

DASHBOARD = "/admin/provisioning/dashboard/"


@pytest.fixture
def staff_client() -> Client:
    client = Client()
    client.force_login(operator_get_or_create(email="staff@matih.test"))
    return client


def waiting_job(tier: str = "FREE"):
    """A job that failed a step and waits for its retry an hour from now."""
    tenant, job, key = quiet_tenant(tier=tier)
    plan = plan_for(tier)
    for position, step in enumerate(plan.steps):
        StepRun.objects.create(job=job, name=step.name, phase=step.phase, position=position,
                               status="SUCCEEDED" if position == 0 else ("FAILED" if position == 1 else "PENDING"),
                               attempts=1 if position < 2 else 0, started_at=timezone.now(),
                               finished_at=timezone.now() if position < 2 else None,
                               duration_ms=12 if position < 2 else None,
                               succeeded_at=timezone.now() if position == 0 else None,
                               error="Step CONFIRM_TENANT_RECORD failed: simulated timeout" if position == 1 else "")
    ProvisioningEvent.objects.create(job=job, seq=1, kind="job.retry_scheduled", step="CONFIRM_TENANT_RECORD",
                                     message="Step CONFIRM_TENANT_RECORD failed: simulated timeout")
    ProvisioningJob.objects.filter(id=job.id).update(
        status="RETRY_SCHEDULED", version=1, retry_count=1, next_retry_at=timezone.now() + timezone.timedelta(hours=1),
        error_message="Step CONFIRM_TENANT_RECORD failed: simulated timeout", started_at=timezone.now())
    return tenant, ProvisioningJob.objects.get(id=job.id)


def test_dashboard_is_for_staff_only(client):
    response = client.get(DASHBOARD)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_admin_index_links_the_dashboard(staff_client):
    assert DASHBOARD in staff_client.get("/admin/").content.decode()


def test_dashboard_shows_counts_live_rows_waiting_jobs_failures_and_the_chart(staff_client):
    active, _, _ = quiet_tenant(tier="PROFESSIONAL")
    waiting, job = waiting_job()
    page = staff_client.get(DASHBOARD)
    assert page.status_code == 200
    html = page.content.decode()
    counts = page.context["counts"]
    assert dict((status, total) for status, _, total in counts.rows)["RETRY_SCHEDULED"] == 1
    assert counts.total == 2
    assert f'data-tenant-id="{active.id}"' in html, "an active job is a live row"
    assert f'data-job-id="{job.id}"' in html, "the waiting job is listed"
    assert reverse("admin:provisioning_provisioningjob_retry_now", args=[job.id]) in html
    assert "simulated timeout" in html, "failures show their message"
    assert "<svg" in html and 'data-step="VALIDATE_INPUT"' in html, "the step chart is drawn on the server"
    assert "CONFIRM_TENANT_RECORD: 1 of 1 attempt(s) failed" in html, "a failed attempt counts, retried or not"
    assert "provisioning/dashboard.js" in html and "//cdn" not in html


def test_job_page_shows_the_phase_timeline_events_and_buttons(staff_client):
    tenant, job = waiting_job()
    html = staff_client.get(reverse("admin:provisioning_provisioningjob_change", args=[job.id])).content.decode()
    for phase in plan_for("FREE").phases:
        assert phase in html
    assert 'data-step="CONFIRM_TENANT_RECORD"' in html and "simulated timeout" in html
    for action in ("retry_now", "cancel", "roll_back"):
        assert reverse(f"admin:provisioning_provisioningjob_{action}", args=[job.id]) in html
    assert 'name="_save"' not in html, "a job is not edited by hand"


def test_job_list_filters_by_status_and_tier(staff_client):
    waiting_job(tier="FREE")
    quiet_tenant(tier="PROFESSIONAL")
    url = reverse("admin:provisioning_provisioningjob_changelist")
    assert staff_client.get(url, {"status__exact": "RETRY_SCHEDULED"}).context["cl"].result_count == 1
    assert staff_client.get(url, {"tier__exact": "PROFESSIONAL"}).context["cl"].result_count == 1


def test_cancel_button_cancels_and_reports(staff_client):
    _, job, _ = quiet_tenant()
    response = staff_client.post(reverse("admin:provisioning_provisioningjob_cancel", args=[job.id]),
                                 {"next": DASHBOARD}, follow=True)
    assert response.redirect_chain[-1][0] == DASHBOARD
    assert ProvisioningJob.objects.get(id=job.id).status in ("CANCELLING", "CANCELLED")
    assert any("cancelling" in str(m) for m in response.context["messages"])


def test_a_refused_action_is_an_error_message(staff_client):
    _, job, _ = quiet_tenant()  # PENDING: nothing to roll back
    response = staff_client.post(reverse("admin:provisioning_provisioningjob_roll_back", args=[job.id]), follow=True)
    assert ProvisioningJob.objects.get(id=job.id).status == "PENDING"
    errors = [str(m) for m in response.context["messages"] if m.level_tag == "error"]
    assert errors and "PENDING" in errors[0]


def test_actions_need_post(staff_client):
    _, job, _ = quiet_tenant()
    assert staff_client.get(reverse("admin:provisioning_provisioningjob_cancel", args=[job.id])).status_code == 405


def test_list_action_reports_each_refusal(staff_client):
    _, pending, _ = quiet_tenant()
    _, waiting = waiting_job()
    response = staff_client.post(reverse("admin:provisioning_provisioningjob_changelist"), {
        "action": "roll_back_jobs", "_selected_action": [str(pending.id), str(waiting.id)]}, follow=True)
    levels = sorted(m.level_tag for m in response.context["messages"])
    assert levels == ["error", "success"]
    assert ProvisioningJob.objects.get(id=waiting.id).status in ("ROLLING_BACK", "FAILED")


def test_tenant_list_has_status_tier_region_namespace_search_and_filters(staff_client):
    tenant, _, _ = quiet_tenant()
    page = staff_client.get(reverse("admin:tenants_tenant_changelist"), {"q": tenant.slug})
    assert page.context["cl"].result_count == 1
    for column in ("status", "tier", "region", "kubernetes_namespace"):
        assert column in page.context["cl"].list_display
