"""The dashboard in a real browser (Playwright driving Debian's chromium) against the ASGI server
and a real worker: rows change live, without a reload; "retry now" resumes a waiting job."""
from __future__ import annotations

import os

import pytest
from django.db import connections
from django.utils import timezone

from iam.services import operator_get_or_create
from provisioning.models import ProvisioningJob
from tests.dataplane.conftest import wait_for
from tests.dataplane.helpers import register

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
PASSWORD = "dashboard-test-password"


@pytest.fixture
def browser_page(monkeypatch):
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    # Playwright's sync API keeps an event loop in this thread; the test's ORM calls are still synchronous.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.set_default_timeout(30_000)
        try:
            yield page
        finally:
            browser.close()
            # The ORM calls made while Playwright's loop ran used their own connection: close it
            # here, or the test database cannot be dropped at the end of the session.
            connections.close_all()


def log_in(page, base_url: str) -> None:
    staff = operator_get_or_create(email="dashboard@matih.test")
    staff.set_password(PASSWORD)
    staff.save(update_fields=["password"])
    page.goto(f"{base_url}/admin/login/?next=/admin/provisioning/dashboard/")
    page.fill("#id_username", staff.username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/provisioning/dashboard/")
    page.wait_for_selector('#live-state[data-state="live"]')


def row(tenant_id: str, tenant_status: str) -> str:
    return f'#active-jobs tr[data-tenant-id="{tenant_id}"][data-tenant-status="{tenant_status}"]'


def test_dashboard_rows_go_live_from_provisioning_to_active_and_retry_now_resumes(
        dataplane, asgi_server, operator_client, browser_page, test_output_dir):
    page = browser_page
    log_in(page, asgi_server.url)
    page.evaluate("window.sameDocument = true")

    # 1. A tenant registered through the API appears and becomes ACTIVE, pushed over the WebSocket.
    tenant = register(operator_client, tier="PROFESSIONAL", simulate={"timeScale": 0.01})
    page.wait_for_selector(row(tenant["id"], "PROVISIONING"))
    page.wait_for_selector(row(tenant["id"], "ACTIVE"), timeout=60_000)
    live_row = page.locator(f'#active-jobs tr[data-tenant-id="{tenant["id"]}"]')
    assert live_row.locator(".phase").inner_text() == "COMPLETED"
    assert live_row.locator(".pct").inner_text() == "100%"
    assert page.evaluate("window.sameDocument === true"), "the page was not reloaded"

    # 2. A job waiting for its retry (a transient fault; its retry pushed an hour away) resumes on "Retry now".
    flaky = register(operator_client, tier="FREE",
                     simulate={"timeScale": 0.002, "faults": {"CONFIGURE_QUOTAS": {"mode": "transient", "times": 1}}})
    page.wait_for_selector(f'{row(flaky["id"], "PROVISIONING")}[data-job-status="RETRY_SCHEDULED"]')
    job = wait_for(lambda: ProvisioningJob.objects.filter(tenant_id=flaky["id"], status="RETRY_SCHEDULED").first(),
                   message="the job to wait for its retry")
    ProvisioningJob.objects.filter(id=job.id, status="RETRY_SCHEDULED").update(
        next_retry_at=timezone.now() + timezone.timedelta(hours=1))
    page.reload()
    waiting = page.locator(f'section.waiting tr[data-job-id="{job.id}"]')
    assert "CONFIGURE_QUOTAS" in waiting.locator(".error").inner_text()
    waiting.get_by_role("button", name="Retry now").click()
    page.wait_for_url("**/admin/provisioning/dashboard/")
    assert "resumed" in page.locator("ul.messagelist").inner_text()
    page.wait_for_selector(row(flaky["id"], "ACTIVE"), timeout=60_000)
    job.refresh_from_db()
    assert job.status == "COMPLETED" and job.retry_count == 1

    page.reload()  # the counts and the chart are drawn at page load
    page.screenshot(path=str(test_output_dir / "dashboard.png"), full_page=True)

    # 3. The job page: its phase timeline shows the step that failed once, then succeeded.
    page.goto(f"{asgi_server.url}/admin/provisioning/provisioningjob/{job.id}/change/")
    quotas = page.locator('.matih-timeline tr[data-step="CONFIGURE_QUOTAS"]')
    assert quotas.locator("td.num").first.inner_text() == "2", "two attempts"
    assert "SUCCEEDED" in quotas.inner_text()
    page.screenshot(path=str(test_output_dir / "job-page.png"), full_page=True)

