"""The admin as the provisioning dashboard: pages, their live parts, actions and buttons, and the
tenant admin's read-only fields (in-process, Django's test client)."""
from __future__ import annotations

import re
from urllib.parse import quote

import pytest
from django.db import transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from iam.services import operator_get_or_create
from provisioning.dashboard.queries import job_counts
from provisioning.engine.plans import plan_for
from provisioning.engine.states import transition
from provisioning.models import ProvisioningEvent, ProvisioningJob, StepRun
from tenants.models import Tenant

from .helpers import quiet_tenant

pytestmark = pytest.mark.django_db(transaction=True)

DASHBOARD = "/admin/provisioning/dashboard/"
MILLISECONDS = re.compile(r"\b\d\d:\d\d:\d\d\.\d{3}\b")


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
        error_message="Step CONFIRM_TENANT_RECORD failed: simulated timeout", started_at=timezone.now(),
        succeeded_steps=[plan.steps[0].name])
    return tenant, ProvisioningJob.objects.get(id=job.id)


def job_page(job) -> str:
    return reverse("admin:provisioning_provisioningjob_change", args=[job.id])


def sections(client, names: str) -> str:
    response = client.get(DASHBOARD, {"sections": names})
    assert response.status_code == 200, response.content
    return response.content.decode()


# --- the dashboard -------------------------------------------------------------------------------------------


def test_dashboard_is_for_staff_only(client):
    response = client.get(DASHBOARD)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert client.get(DASHBOARD, {"sections": "counts"}).status_code == 302, "its live sections too"


def test_admin_index_links_the_dashboard(staff_client):
    assert DASHBOARD in staff_client.get("/admin/").content.decode()


def test_dashboard_shows_counts_live_rows_waiting_jobs_failures_and_the_chart(staff_client):
    active, _, _ = quiet_tenant(tier="PROFESSIONAL")
    waiting, job = waiting_job()
    page = staff_client.get(DASHBOARD)
    assert page.status_code == 200
    html = page.content.decode()
    counts = page.context["counts"]
    assert counts.by_status["RETRY_SCHEDULED"] == 1 and counts.by_status["PENDING"] == 1
    assert counts.total == 2
    rows = {row["data"]["tenantId"]: row for row in page.context["live_rows"]}
    assert rows[str(active.id)]["tenant"]["slug"] == active.slug, "an open job is a live row"
    assert rows[str(active.id)]["data"]["kind"] == "PROVISION"
    assert f'"tenantId": "{active.id}"' in html, "the live rows are in the page, for its script"
    for region in ("counts", "waiting", "failures", "chart"):
        assert f'data-live-region="{region}"' in html
    assert f'data-job-id="{job.id}"' in html, "the waiting job is listed"
    assert reverse("admin:provisioning_provisioningjob_retry_now", args=[job.id]) in html
    assert "simulated timeout" in html, "failures show their message"
    assert "<svg" in html and 'data-step="VALIDATE_INPUT"' in html, "the step chart is drawn on the server"
    assert "CONFIRM_TENANT_RECORD: 1 of 1 attempt(s) failed" in html, "a failed attempt counts, retried or not"
    assert "provisioning/dashboard.js" in html and "//cdn" not in html


def test_ended_jobs_are_not_active_rows_but_recent_ones_are_listed_as_ended(staff_client):
    _, open_job, _ = quiet_tenant()
    ended, ended_job, _ = quiet_tenant()
    ProvisioningJob.objects.filter(id=ended_job.id).update(status="COMPLETED", completed_at=timezone.now())
    old, old_job, _ = quiet_tenant()
    ProvisioningJob.objects.filter(id=old_job.id).update(status="FAILED",
                                                         completed_at=timezone.now() - timezone.timedelta(hours=1))
    rows = {row["data"]["jobId"]: row["data"]["jobStatus"] for row in staff_client.get(DASHBOARD).context["live_rows"]}
    assert rows == {str(open_job.id): "PENDING", str(ended_job.id): "COMPLETED"}


def test_counts_are_by_status_by_tier_and_by_kind():
    tenant, job, _ = quiet_tenant(tier="PROFESSIONAL")
    ProvisioningJob.objects.filter(id=job.id).update(status="COMPLETED", completed_at=timezone.now())
    ProvisioningJob.objects.create(tenant=tenant, kind="CHANGE_TIER", from_tier="PROFESSIONAL", tier="ENTERPRISE",
                                   status="RUNNING")
    quiet_tenant(tier="FREE")
    counts = job_counts()
    running = next(row for row in counts.rows if row.status == "RUNNING")
    assert dict(running.by_kind) == {"PROVISION": 0, "CHANGE_TIER": 1, "SUSPEND": 0, "ACTIVATE": 0, "DEPROVISION": 0}
    assert dict(running.by_tier) == {"FREE": 0, "PROFESSIONAL": 0, "ENTERPRISE": 1}
    assert dict(counts.kind_totals)["PROVISION"] == 2 and dict(counts.tier_totals)["PROFESSIONAL"] == 1
    assert counts.total == 3 and [row.status for row in counts.rows][-3:] == ["COMPLETED", "FAILED", "CANCELLED"]


def test_live_sections_come_alone_and_show_what_changed_since_the_page_was_drawn(staff_client):
    before = sections(staff_client, "counts,waiting,failures")
    assert "<html" not in before and "messagelist" not in before
    assert [m for m in re.findall(r'data-live-region="(\w+)"', before)] == ["counts", "waiting", "failures"]
    assert "No job is waiting for a retry." in before

    _, job = waiting_job()
    after = sections(staff_client, "counts,waiting,failures")
    assert f'<tr data-job-id="{job.id}"' in after, "the waiting job appears"
    counts = re.search(r'<tr data-status="RETRY_SCHEDULED">.*?</tr>', after, re.S).group(0)
    assert re.search(r'data-tier="FREE"><a [^>]*>1</a>', counts) and re.search(r'data-kind="PROVISION"><a [^>]*>1</a>',
                                                                                 counts)
    assert "job.retry_scheduled" in after and "simulated timeout" in after, "the failure appears"
    assert MILLISECONDS.search(after.split('data-live-region="waiting"')[1]), "times show milliseconds"
    assert f'<input type="hidden" name="next" value="{DASHBOARD}">' in after, "its buttons come back to the page"


def test_an_unknown_section_is_a_400_that_names_it(staff_client):
    response = staff_client.get(DASHBOARD, {"sections": "counts,nope"})
    assert response.status_code == 400
    assert "nope" in response.content.decode() and "waiting" in response.content.decode()


# --- the job page --------------------------------------------------------------------------------------------


def test_job_page_shows_the_phase_timeline_events_and_buttons(staff_client):
    tenant, job = waiting_job()
    html = staff_client.get(job_page(job)).content.decode()
    for phase in plan_for("FREE").phases:
        assert f'data-phase="{phase}"' in html
    assert 'data-step="CONFIRM_TENANT_RECORD"' in html and "simulated timeout" in html
    assert f"PROVISION job of {tenant.slug}" in html
    assert '<form method="post" action="%s"' % reverse("admin:provisioning_provisioningjob_retry_now", args=[job.id]) \
        in html, "retry now posts at once"
    for action in ("cancel", "roll_back"):
        assert 'href="%s?next=' % reverse(f"admin:provisioning_provisioningjob_{action}", args=[job.id]) in html, \
            f"{action} asks first"
    assert 'name="_save"' not in html, "a job is not edited by hand"
    assert f'data-ws-path="/ws/tenants/{tenant.id}/provisioning/"' in html


def test_job_page_times_show_milliseconds(staff_client):
    _, job = waiting_job()
    html = staff_client.get(job_page(job)).content.decode()
    events = html.split('data-live-region="events"')[1]
    assert 'data-event="job.retry_scheduled"' in events
    assert MILLISECONDS.search(events), "event times"
    assert MILLISECONDS.search(html.split('data-live-region="timeline"')[1].split("</table>")[0]), "step starts"
    assert "a.m." not in html and "p.m." not in html


def test_job_page_live_parts_show_the_job_as_it_is_now(staff_client):
    _, job, _ = quiet_tenant()
    live = reverse("admin:provisioning_provisioningjob_live", args=[job.id])
    first = staff_client.get(live).content.decode()
    assert "<html" not in first
    assert re.findall(r'data-live-region="(\w+)"', first) == ["tools", "timeline", "fields", "events"]
    assert 'data-job-status="PENDING"' in first
    with transaction.atomic():
        transition(job.id, from_=["PENDING"], to="RUNNING", event="job.started", message="started by the test",
                   started_at=timezone.now())
    later = staff_client.get(live).content.decode()
    assert 'data-job-status="RUNNING"' in later and "started by the test" in later
    assert 'data-version="1"' in later
    cancel = reverse("admin:provisioning_provisioningjob_cancel", args=[job.id])
    assert f'href="{cancel}?next={quote(job_page(job), safe="")}"' in later, "its buttons come back to the page"


# --- actions -------------------------------------------------------------------------------------------------


def test_cancel_asks_first_then_cancels_and_reports(staff_client):
    _, job, _ = quiet_tenant()
    url = reverse("admin:provisioning_provisioningjob_cancel", args=[job.id])
    page = staff_client.get(url, {"next": DASHBOARD})
    assert page.status_code == 200 and "Yes, cancel" in page.content.decode()
    assert ProvisioningJob.objects.get(id=job.id).status == "PENDING", "asking changes nothing"
    response = staff_client.post(url, {"next": DASHBOARD}, follow=True)
    assert response.redirect_chain[-1][0] == DASHBOARD
    assert ProvisioningJob.objects.get(id=job.id).status in ("CANCELLING", "CANCELLED")
    assert any("cancelling" in str(m) for m in response.context["messages"])


def test_the_confirmation_of_an_action_that_does_not_apply_says_why_and_offers_none(staff_client):
    _, job, _ = quiet_tenant()
    ProvisioningJob.objects.filter(id=job.id).update(status="FAILED", completed_at=timezone.now())
    html = staff_client.get(reverse("admin:provisioning_provisioningjob_cancel", args=[job.id])).content.decode()
    assert "Not now" in html and "FAILED" in html and "Yes, cancel" not in html


def test_a_refused_action_is_an_error_message(staff_client):
    tenant, job, _ = quiet_tenant()  # PENDING: nothing to roll back
    response = staff_client.post(reverse("admin:provisioning_provisioningjob_roll_back", args=[job.id]), follow=True)
    assert ProvisioningJob.objects.get(id=job.id).status == "PENDING"
    errors = [str(m) for m in response.context["messages"] if m.level_tag == "error"]
    assert errors and "PENDING" in errors[0] and tenant.slug in errors[0]


def test_an_action_that_does_not_ask_first_needs_post(staff_client):
    _, job = waiting_job()
    assert staff_client.get(reverse("admin:provisioning_provisioningjob_retry_now", args=[job.id])).status_code == 405
    assert ProvisioningJob.objects.get(id=job.id).status == "RETRY_SCHEDULED"


def test_an_action_redirects_only_to_this_site(staff_client):
    _, job, _ = quiet_tenant()
    response = staff_client.post(reverse("admin:provisioning_provisioningjob_cancel", args=[job.id]),
                                 {"next": "https://evil.example.com/"})
    assert response["Location"] == job_page(job)


def test_list_action_reports_each_refusal(staff_client):
    _, pending, _ = quiet_tenant()
    _, waiting = waiting_job()
    response = staff_client.post(reverse("admin:provisioning_provisioningjob_changelist"), {
        "action": "roll_back_jobs", "_selected_action": [str(pending.id), str(waiting.id)]}, follow=True)
    levels = sorted(m.level_tag for m in response.context["messages"])
    assert levels == ["error", "success"]
    assert ProvisioningJob.objects.get(id=waiting.id).status in ("ROLLING_BACK", "FAILED")


def test_job_list_filters_by_status_kind_and_tier(staff_client):
    waiting_job(tier="FREE")
    quiet_tenant(tier="PROFESSIONAL")
    url = reverse("admin:provisioning_provisioningjob_changelist")
    assert staff_client.get(url, {"status__exact": "RETRY_SCHEDULED"}).context["cl"].result_count == 1
    assert staff_client.get(url, {"tier__exact": "PROFESSIONAL"}).context["cl"].result_count == 1
    assert staff_client.get(url, {"kind__exact": "PROVISION"}).context["cl"].result_count == 2
    assert "operation" in staff_client.get(url).context["cl"].list_display


# --- the tenant admin ----------------------------------------------------------------------------------------


def test_tenant_list_has_status_tier_region_namespace_search_and_filters(staff_client):
    tenant, _, _ = quiet_tenant()
    page = staff_client.get(reverse("admin:tenants_tenant_changelist"), {"q": tenant.slug})
    assert page.context["cl"].result_count == 1
    for column in ("status", "tier", "region", "kubernetes_namespace"):
        assert column in page.context["cl"].list_display


def test_no_tenant_is_added_or_deleted_in_the_admin(staff_client):
    tenant, _, _ = quiet_tenant()
    assert staff_client.get(reverse("admin:tenants_tenant_add")).status_code == 403
    assert staff_client.post(reverse("admin:tenants_tenant_delete", args=[tenant.id]), {"post": "yes"}).status_code \
        == 403
    changelist = staff_client.get(reverse("admin:tenants_tenant_changelist"))
    assert "delete_selected" not in changelist.content.decode()
    assert reverse("admin:tenants_tenant_add") not in changelist.content.decode()
    assert Tenant.objects.filter(id=tenant.id).exists()


def test_what_operations_own_is_read_only_on_the_tenant_page(staff_client):
    tenant, _, _ = quiet_tenant()
    url = reverse("admin:tenants_tenant_change", args=[tenant.id])
    form = staff_client.get(url).context["adminform"].form
    assert sorted(form.fields) == ["admin_email", "name"]
    response = staff_client.post(url, {
        "name": "Renamed", "admin_email": tenant.admin_email, "slug": "other-slug", "tier": "ENTERPRISE",
        "status": "ACTIVE", "region": "westeurope", "deployment_type": "DEDICATED", "kubernetes_namespace": "x",
        "azure_aks_cluster_name": "x", "dns_zone": "x.example.com", "error_message": "x",
        "provisioned_at": "2020-01-01 00:00:00", "service_principal_encrypted": "x",
        "settings-TOTAL_FORMS": "0", "settings-INITIAL_FORMS": "0", "settings-MIN_NUM_FORMS": "0",
        "settings-MAX_NUM_FORMS": "1"})
    assert response.status_code == 302, response.content
    after = Tenant.objects.get(id=tenant.id)
    assert after.name == "Renamed"
    assert (after.slug, after.tier, after.status, after.region) == (tenant.slug, "FREE", "PROVISIONING", "eastus")
    assert (after.deployment_type, after.kubernetes_namespace, after.azure_aks_cluster_name, after.dns_zone,
            after.error_message, after.provisioned_at, after.service_principal_encrypted) == \
        (tenant.deployment_type, tenant.kubernetes_namespace, None, None, "", None, "")


def test_a_failed_tenant_retries_provisioning_from_its_page_after_a_confirmation(staff_client):
    tenant, job, _ = quiet_tenant()
    ProvisioningJob.objects.filter(id=job.id).update(status="FAILED", completed_at=timezone.now())
    Tenant.objects.filter(id=tenant.id).update(status="FAILED", error_message="Step X failed")
    page = staff_client.get(reverse("admin:tenants_tenant_change", args=[tenant.id])).content.decode()
    url = reverse("admin:tenants_tenant_retry_provisioning", args=[tenant.id])
    assert f'href="{url}?next=' in page
    assert "Yes, retry provisioning" in staff_client.get(url).content.decode()
    assert ProvisioningJob.objects.filter(tenant=tenant).count() == 1, "asking changes nothing"
    response = staff_client.post(url, follow=True)
    assert ProvisioningJob.objects.filter(tenant=tenant).count() == 2
    assert any("provisioning again" in str(m) for m in response.context["messages"])


# --- the menu ------------------------------------------------------------------------------------------------


def test_the_admin_menu_spells_every_plural(staff_client):
    names = [str(model["name"]) for app in staff_client.get("/admin/").context["app_list"] for model in app["models"]]
    assert "Webhook deliveries" in names and "Provisioning jobs" in names and "API keys" in names
    misspelt = [name for name in names if re.search(r"[^aeiou]ys$|sss$|settingss$", name)]
    assert misspelt == []


# --- the tenant's lifecycle from its page -------------------------------------------------------------------


def _active_tenant(tier: str = "FREE") -> Tenant:
    tenant, job, _ = quiet_tenant(tier=tier)
    ProvisioningJob.objects.filter(id=job.id).update(status="COMPLETED", completed_at=timezone.now())
    Tenant.objects.filter(id=tenant.id).update(status="ACTIVE")
    return Tenant.objects.get(id=tenant.id)


@pytest.mark.parametrize("action, question", [
    ("upgrade", "Yes, change tier"), ("suspend", "Yes, suspend"), ("request_deletion", "Yes, delete"),
])
def test_lifecycle_actions_ask_first_then_start_their_job(staff_client, monkeypatch, action, question):
    monkeypatch.setattr("provisioning.lifecycle.dispatch_job", lambda job_id, plan: None)
    tenant = _active_tenant()
    url = reverse(f"admin:tenants_tenant_{action}", args=[tenant.id])
    page = staff_client.get(reverse("admin:tenants_tenant_change", args=[tenant.id])).content.decode()
    assert f'href="{url}?next=' in page
    assert question in staff_client.get(url).content.decode()
    assert ProvisioningJob.objects.filter(tenant=tenant).count() == 1, "asking changes nothing"
    form = {"upgrade": {"new_tier": "PROFESSIONAL"}, "suspend": {"reason": "invoice"},
            "request_deletion": {"grace_seconds": 60}}
    response = staff_client.post(url, form[action], follow=True)
    messages = [str(m) for m in response.context["messages"]]
    kinds = {"upgrade": "CHANGE_TIER", "suspend": "SUSPEND", "request_deletion": "SUSPEND"}
    newest = ProvisioningJob.objects.filter(tenant=tenant).order_by("-created_at").first()
    assert newest.kind == kinds[action], messages
    tenant.refresh_from_db()
    assert tenant.status == {"upgrade": "UPGRADING", "suspend": "ACTIVE", "request_deletion": "PENDING_DELETION"}[action]


def test_an_upgrade_to_enterprise_from_the_admin_needs_the_service_principal(staff_client, monkeypatch):
    monkeypatch.setattr("provisioning.lifecycle.dispatch_job", lambda job_id, plan: None)
    tenant = _active_tenant()
    url = reverse("admin:tenants_tenant_upgrade", args=[tenant.id])
    refused = staff_client.post(url, {"new_tier": "ENTERPRISE"})
    assert refused.status_code == 200 and "needs the four fields" in refused.content.decode()
    assert ProvisioningJob.objects.filter(tenant=tenant).count() == 1
    staff_client.post(url, {"new_tier": "ENTERPRISE", "client_id": "a", "client_secret": "s3cr3t-in-the-admin",
                            "azure_tenant_id": "c", "subscription_id": "d"})
    assert ProvisioningJob.objects.filter(tenant=tenant, kind="CHANGE_TIER", tier="ENTERPRISE").count() == 1
    tenant.refresh_from_db()
    assert tenant.service_principal_encrypted and "s3cr3t" not in tenant.service_principal_encrypted


def test_restore_and_activate_from_the_admin_follow_the_tenants_status(staff_client, monkeypatch):
    monkeypatch.setattr("provisioning.lifecycle.dispatch_job", lambda job_id, plan: None)
    tenant = _active_tenant()
    Tenant.objects.filter(id=tenant.id).update(status="SUSPENDED")
    page = staff_client.get(reverse("admin:tenants_tenant_change", args=[tenant.id])).content.decode()
    assert "Activate" in page
    staff_client.post(reverse("admin:tenants_tenant_activate", args=[tenant.id]))
    assert ProvisioningJob.objects.filter(tenant=tenant, kind="ACTIVATE").count() == 1
    ProvisioningJob.objects.filter(tenant=tenant, kind="ACTIVATE").update(status="COMPLETED")
    staff_client.post(reverse("admin:tenants_tenant_request_deletion", args=[tenant.id]), {"grace_seconds": 3600})
    tenant.refresh_from_db()
    assert tenant.status == "PENDING_DELETION" and tenant.status_before_deletion == "SUSPENDED"
    response = staff_client.post(reverse("admin:tenants_tenant_restore", args=[tenant.id]), follow=True)
    assert any("restored: SUSPENDED" in str(m) for m in response.context["messages"])
    again = staff_client.post(reverse("admin:tenants_tenant_restore", args=[tenant.id]), follow=True)
    assert any("The tenant is SUSPENDED" in str(m) for m in again.context["messages"]), "refused, and says why"
