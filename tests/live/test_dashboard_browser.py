"""The dashboard and the job page in a real browser (Playwright driving Debian's chromium) against
the ASGI server and a real worker, at 1024 and 1440 px: every section changes live, without a
reload; "Active jobs" holds open jobs only; nothing is cut off; times show milliseconds.
Screenshots go to test-output/ (dashboard-1024.png, job-page-1024.png, ...)."""
from __future__ import annotations

import os
import re

import pytest
from django.db import connections

from iam.services import operator_get_or_create
from provisioning.models import ProvisioningJob
from tests.dataplane.helpers import register

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
PASSWORD = "dashboard-test-password"
DASHBOARD = "/admin/provisioning/dashboard/"
MILLISECONDS = re.compile(r"^\d\d:\d\d:\d\d\.\d{3}$|^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}$")
LONG = 90_000  # ms: a job's whole life under a loaded machine

# Records, from the page's start, any ended job ever seen among "Active jobs".
WATCH_ACTIVE_JOBS = """() => {
  window.sameDocument = true;
  window.endedInActive = [];
  const look = () => document.querySelectorAll('#active-jobs tbody tr').forEach((row) => {
    if (['COMPLETED', 'FAILED', 'CANCELLED'].includes(row.dataset.jobStatus)) window.endedInActive.push(row.dataset.jobId);
  });
  new MutationObserver(look).observe(document.getElementById('active-jobs'),
                                     {subtree: true, childList: true, attributes: true});
  look();
}"""

# Elements whose content is wider than they are (cut off, or hidden behind a scroll bar).
OVERFLOWING = """() => {
  const wide = [];
  const check = (el, name) => { if (el.scrollWidth > el.clientWidth + 1) wide.push(`${name}: ${el.scrollWidth} > ${el.clientWidth}`); };
  check(document.documentElement, 'page');
  document.querySelectorAll('#content-main .module, #content-main .table-scroll, #content-main .chart-frame, #content-main fieldset')
    .forEach((el, i) => check(el, `${el.tagName.toLowerCase()}.${el.className} ${el.dataset.liveRegion || i}`));
  return wide;
}"""

COUNT = """([status, column, value]) => {
  const cell = document.querySelector(`section.counts tr[data-status="${status}"] td[data-${column}="${value}"]`);
  return cell ? Number(cell.textContent.trim()) : -1;
}"""


@pytest.fixture
def browser(monkeypatch):
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    # Playwright's sync API keeps an event loop in this thread; the test's ORM calls are still synchronous.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
            # The ORM calls made while Playwright's loop ran used their own connection: close it
            # here, or the test database cannot be dropped at the end of the session.
            connections.close_all()


def logged_in_context(browser, base_url: str, width: int):
    staff = operator_get_or_create(email="dashboard@matih.test")
    staff.set_password(PASSWORD)
    staff.save(update_fields=["password"])
    context = browser.new_context(viewport={"width": width, "height": 900})
    context.set_default_timeout(30_000)
    page = context.new_page()
    page.goto(f"{base_url}/admin/login/?next={DASHBOARD}")
    page.fill("#id_username", staff.username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"**{DASHBOARD}")
    page.wait_for_selector('#live-state[data-state="live"]')
    return context, page


def row(table: str, tenant_id: str, **data) -> str:
    attributes = "".join(f'[data-{name.replace("_", "-")}="{value}"]' for name, value in data.items())
    return f'#{table} tr[data-tenant-id="{tenant_id}"]{attributes}'


def wait_for_count(page, status: str, column: str, value: str, expected: int) -> None:
    page.wait_for_function(f"(args) => ({COUNT})(args) === {expected}", arg=[status, column, value], timeout=LONG)


def texts(page, selector: str) -> list[str]:
    return [text.strip() for text in page.locator(selector).all_inner_texts()]


@pytest.mark.parametrize("width", [1024, 1440])
def test_every_section_and_the_job_page_change_live_and_nothing_is_cut_off(
        width, dataplane, asgi_server, operator_client, browser, test_output_dir):
    context, page = logged_in_context(browser, asgi_server.url, width)
    page.evaluate(WATCH_ACTIVE_JOBS)

    # 1. A long job (PROFESSIONAL, scaled to some seconds): live in "Active jobs", its progress moving.
    long = register(operator_client, tier="PROFESSIONAL", simulate={"timeScale": 0.04})
    page.wait_for_selector(row("active-jobs", long["id"], kind="PROVISION"))
    long_row = page.locator(row("active-jobs", long["id"]))
    assert long_row.locator(".operation").inner_text().strip() == "PROVISION"
    first_pct = long_row.locator(".pct").inner_text()
    page.wait_for_function(
        "([selector, first]) => { const pct = document.querySelector(selector); return pct && pct.textContent !== first; }",
        arg=[row("active-jobs", long["id"]) + " .pct", first_pct], timeout=LONG)

    # 2. A transient fault: the job waits for its retry (no sweeper here resumes it). A row appears in
    #    "Waiting for a retry", the failure in "Recent failures", the counts change.
    flaky = register(operator_client, tier="FREE",
                     simulate={"timeScale": 0.002, "faults": {"CONFIGURE_QUOTAS": {"mode": "transient", "times": 1}}})
    flaky_job = flaky["provisioningJobId"]
    waiting = page.locator(f'section.waiting tr[data-job-id="{flaky_job}"]')
    waiting.wait_for(timeout=LONG)
    assert "CONFIGURE_QUOTAS" in waiting.locator(".error").inner_text()
    assert waiting.locator(".operation").inner_text().strip() == "PROVISION"
    page.wait_for_selector(f'section.failures tr[data-job-id="{flaky_job}"][data-event="job.retry_scheduled"]')
    wait_for_count(page, "RETRY_SCHEDULED", "tier", "FREE", 1)
    wait_for_count(page, "RETRY_SCHEDULED", "kind", "PROVISION", 1)
    page.wait_for_selector(row("active-jobs", flaky["id"], job_status="RETRY_SCHEDULED"))

    # 3. A permanent fault: the job rolls back and fails: "Recent failures" lists it, it has ended.
    doomed = register(operator_client, tier="FREE",
                      simulate={"timeScale": 0.002, "faults": {"SETUP_DATABASE": {"mode": "permanent"}}})
    page.wait_for_selector(f'section.failures table.failed-jobs tr[data-job-id="{doomed["provisioningJobId"]}"]',
                           timeout=LONG)
    page.wait_for_selector(row("ended-jobs", doomed["id"], job_status="FAILED", tenant_status="FAILED"))
    wait_for_count(page, "FAILED", "tier", "FREE", 1)

    # While the long job runs: look at the whole page, and check nothing is cut off.
    page.screenshot(path=str(test_output_dir / f"dashboard-{width}.png"), full_page=True)
    assert page.evaluate(OVERFLOWING) == []

    # 4. The long job ends: its row leaves "Active jobs" for "Ended", marked COMPLETED; the counts follow.
    page.wait_for_selector(row("ended-jobs", long["id"], job_status="COMPLETED", tenant_status="ACTIVE"), timeout=LONG)
    ended = page.locator(row("ended-jobs", long["id"]))
    assert ended.locator(".phase").inner_text() == "COMPLETED" and ended.locator(".pct").inner_text() == "100%"
    assert page.locator(row("active-jobs", long["id"])).count() == 0
    wait_for_count(page, "COMPLETED", "tier", "PROFESSIONAL", 1)

    # Times show milliseconds wherever the dashboard shows one.
    times = texts(page, "section.failures td.when time") + texts(page, "section.waiting td.when time") + \
        texts(page, "#ended-jobs td.when time") + texts(page, "h2 .as-of time")
    assert times and all(MILLISECONDS.match(text) for text in times), times
    assert page.evaluate("window.sameDocument === true"), "the dashboard was not reloaded"
    assert page.evaluate("window.endedInActive") == [], "an ended job showed among the active ones"

    # 5. The job page of the waiting job, in a second tab: live too.
    job_tab = context.new_page()
    job_tab.goto(f"{asgi_server.url}/admin/provisioning/provisioningjob/{flaky_job}/change/")
    job_tab.wait_for_selector('#live-state[data-state="live"]')
    job_tab.evaluate("window.sameDocument = true")
    quotas = '[data-live-region="timeline"] tr.step[data-step="CONFIGURE_QUOTAS"]'
    assert job_tab.locator(f"{quotas} .attempts").inner_text() == "1"
    assert job_tab.locator('[data-live-region="timeline"]').get_attribute("data-job-status") == "RETRY_SCHEDULED"
    assert job_tab.evaluate(OVERFLOWING) == []
    job_tab.screenshot(path=str(test_output_dir / f"job-page-{width}-waiting.png"), full_page=True)

    # "Retry now" on the dashboard resumes it (the form posts: the dashboard reloads, the job tab does not).
    waiting.get_by_role("button", name="Retry now").click()
    page.wait_for_url(f"**{DASHBOARD}")
    assert "resumed" in page.locator("ul.messagelist").inner_text()

    job_tab.wait_for_selector('[data-live-region="timeline"][data-job-status="COMPLETED"]', timeout=LONG)
    assert job_tab.locator(f"{quotas} .attempts").inner_text() == "2"
    assert job_tab.locator(f"{quotas} .step-status").inner_text() == "SUCCEEDED"
    assert job_tab.locator('[data-live-region="events"] tr[data-event="job.completed"]').count() == 1
    assert job_tab.locator('[data-live-region="tools"] .action-retry-now').get_attribute("aria-disabled") == "true"
    assert job_tab.evaluate("window.sameDocument === true"), "the job page was not reloaded"
    event_times = texts(job_tab, '[data-live-region="events"] td.when')
    step_times = [t for t in texts(job_tab, '[data-live-region="timeline"] td.when') if t != "-"]
    assert event_times and step_times and all(MILLISECONDS.match(t) for t in event_times + step_times)
    assert job_tab.evaluate(OVERFLOWING) == []
    job_tab.screenshot(path=str(test_output_dir / f"job-page-{width}.png"), full_page=True)

    # Back on the dashboard (reloaded by the retry): the resumed job ends, its waiting row goes, live.
    page.evaluate(WATCH_ACTIVE_JOBS)
    page.wait_for_selector(row("ended-jobs", flaky["id"], job_status="COMPLETED"), timeout=LONG)
    page.wait_for_selector(f'section.waiting tr[data-job-id="{flaky_job}"]', state="detached")
    wait_for_count(page, "RETRY_SCHEDULED", "tier", "FREE", 0)
    assert page.evaluate("window.endedInActive") == [], "an ended job showed among the active ones"
    assert page.evaluate(OVERFLOWING) == []
    assert ProvisioningJob.objects.get(id=flaky_job).retry_count == 1
    page.screenshot(path=str(test_output_dir / f"dashboard-{width}-ended.png"), full_page=True)
    context.close()
