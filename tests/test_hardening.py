"""What a fuzzer found (issue 11) and the registration's tier rules (issue 10), as specifications:
bounded metrics labels, settings validated against their schema, webhook URLs that cannot reach the
platform's own network (at registration and again at delivery), every delivery failure on the backoff
ladder, a service principal only for ENTERPRISE, faults only on the tier's own steps."""
from __future__ import annotations

import http.server
import socket
import threading

import pytest
from django.core import mail
from django.test import override_settings

from provisioning import notifications
from provisioning.engine.plans import plan_for
from provisioning.models import JobStatus, ProvisioningJob, WebhookDelivery
from tenants import services
from tenants.models import Tenant, TenantSettings
from tests.registration_rows import NOTHING, control_plane_rows

URL = "/api/v1/tenants"
SERVICE_PRINCIPAL = {"clientId": "c-1", "clientSecret": "s3cret", "azureTenantId": "t-1", "subscriptionId": "s-1"}


@pytest.fixture(autouse=True)
def no_dispatch(monkeypatch):
    monkeypatch.setattr(services, "_dispatch", lambda job_id: None)


def body(slug: str = "acme", tier: str = "FREE", **extra) -> dict:
    registration = {"name": "Acme", "slug": slug, "tier": tier, "region": "eastus", "adminEmail": f"admin@{slug}.io"}
    if tier == "ENTERPRISE":
        registration["servicePrincipal"] = SERVICE_PRINCIPAL
    return {**registration, **extra}


def field_errors(response) -> dict[str, list[str]]:
    assert response.status_code == 400, response.content[:400]
    payload = response.json()
    assert payload["error"] == "invalid_request" and payload["detail"]
    return payload["fields"]


def assert_refused(response, field: str, reason: str) -> None:
    fields = field_errors(response)
    assert field in fields, fields
    assert any(reason.lower() in text.lower() for text in fields[field]), fields[field]
    assert control_plane_rows() == NOTHING


# --- the tier's rules -------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("tier", ["FREE", "PROFESSIONAL"])
@pytest.mark.parametrize("principal", [
    SERVICE_PRINCIPAL, {}, {"clientId": None, "password": "x"}, None, "a string", [SERVICE_PRINCIPAL],
], ids=["complete", "empty", "odd-sub-fields", "null", "string", "list"])
def test_a_service_principal_below_enterprise_is_refused_as_enterprise_only(operator_client, tier, principal):
    response = operator_client.post(URL, body(tier=tier, servicePrincipal=principal), format="json")

    fields = field_errors(response)
    assert list(fields) == ["servicePrincipal"], fields
    assert "ENTERPRISE only" in fields["servicePrincipal"][0]
    assert control_plane_rows() == NOTHING


@pytest.mark.django_db
def test_a_fault_on_a_step_the_tier_does_not_have_is_refused_naming_the_tiers_steps(operator_client):
    simulate = {"faults": {"TERRAFORM_APPLY": {"mode": "transient"}, "CREATE_NAMESPACE": {"mode": "transient"}}}

    response = operator_client.post(URL, body(simulate=simulate), format="json")

    [reason] = field_errors(response)["simulate.faults"]
    assert "TERRAFORM_APPLY" in reason and "CREATE_NAMESPACE:" not in reason
    assert all(step in reason for step in plan_for("FREE").step_names)
    assert control_plane_rows() == NOTHING


@pytest.mark.django_db
def test_a_fault_on_a_step_of_the_tiers_plan_is_accepted(operator_client):
    simulate = {"faults": {"TERRAFORM_APPLY": {"mode": "permanent"}}}

    response = operator_client.post(URL, body(tier="ENTERPRISE", simulate=simulate), format="json")

    assert response.status_code == 201, response.content
    assert ProvisioningJob.objects.get().context["simulate"]["faults"] == {"TERRAFORM_APPLY": {"mode": "permanent",
                                                                                             "times": 1}}


# --- settings -----------------------------------------------------------------------------------------------

SETTINGS_CASES = [
    ("notifications-string", "FREE", {"notifications": "x"}, "settings.notifications", "json object"),
    ("unknown-key", "FREE", {"colour": "blue"}, "settings.colour", "unknown field"),
    ("timezone-unknown", "FREE", {"timezone": "Mars/Olympus_Mons"}, "settings.timezone", "unknown time zone"),
    ("timezone-path", "FREE", {"timezone": "../../etc/passwd"}, "settings.timezone", "unknown time zone"),
    ("timezone-number", "FREE", {"timezone": 5}, "settings.timezone", "not a valid string"),
    ("locale-sentence", "FREE", {"locale": "english please"}, "settings.locale", "language tag"),
    ("retention-string", "FREE", {"dataRetentionDays": "30"}, "settings.dataRetentionDays", "valid integer"),
    ("retention-zero", "FREE", {"dataRetentionDays": 0}, "settings.dataRetentionDays", "greater than or equal"),
    ("queries-fraction", "FREE", {"maxConcurrentQueries": 2.5}, "settings.maxConcurrentQueries", "valid integer"),
    ("timeout-bool", "FREE", {"queryTimeoutSeconds": True}, "settings.queryTimeoutSeconds", "valid integer"),
    ("email-string", "FREE", {"notifications": {"email": "yes"}}, "settings.notifications.email", "boolean"),
    ("webhooks-string", "FREE", {"notifications": {"webhooks": "http://x.io"}}, "settings.notifications.webhooks",
     "list"),
    ("webhook-string", "FREE", {"notifications": {"webhooks": ["https://hooks.example.com/"]}},
     "settings.notifications.webhooks[0]", "json object"),
    ("webhook-no-url", "FREE", {"notifications": {"webhooks": [{"secret": "s"}]}},
     "settings.notifications.webhooks[0].url", "required"),
    ("webhook-secret-number", "FREE",
     {"notifications": {"webhooks": [{"url": "https://hooks.example.com/", "secret": 5}]}},
     "settings.notifications.webhooks[0].secret", "not a valid string"),
    ("webhook-unknown-key", "FREE",
     {"notifications": {"webhooks": [{"url": "https://hooks.example.com/", "headers": {}}]}},
     "settings.notifications.webhooks[0].headers", "unknown field"),
    ("too-many-webhooks", "FREE",
     {"notifications": {"webhooks": [{"url": f"https://h{i}.example.com/"} for i in range(11)]}},
     "settings.notifications.webhooks", "no more than 10"),
    ("quotas-below-enterprise", "PROFESSIONAL", {"quotas": {"pods": 5}}, "settings.quotas", "ENTERPRISE only"),
    ("custom-config-below-enterprise", "FREE", {"customConfig": {}}, "settings.customConfig", "ENTERPRISE only"),
    ("quota-unknown", "ENTERPRISE", {"quotas": {"gpus": 1}}, "settings.quotas.gpus", "unknown quota"),
    ("quota-not-a-quantity", "ENTERPRISE", {"quotas": {"pods": "lots"}}, "settings.quotas.pods", "quantity"),
    ("quotas-list", "ENTERPRISE", {"quotas": [1]}, "settings.quotas", "json object"),
]


@pytest.mark.django_db
@pytest.mark.parametrize("tier, values, field, reason", [case[1:] for case in SETTINGS_CASES],
                         ids=[case[0] for case in SETTINGS_CASES])
def test_settings_outside_their_schema_are_refused_naming_the_path(operator_client, tier, values, field, reason):
    assert_refused(operator_client.post(URL, body(tier=tier, settings=values), format="json"), field, reason)


@pytest.mark.django_db
def test_settings_inside_their_schema_are_stored_over_the_tiers_defaults(operator_client):
    values = {
        "timezone": "Europe/Paris", "locale": "fr-FR", "dataRetentionDays": 90, "maxConcurrentQueries": 20,
        "queryTimeoutSeconds": 600, "quotas": {"pods": 200, "limits.memory": "128Gi"},
        "customConfig": {"terraform": {"node_count": 5}},
        "notifications": {"email": False, "webhooks": [{"url": "https://hooks.example.com/matih", "secret": "s"}]},
    }

    response = operator_client.post(URL, body(tier="ENTERPRISE", settings=values), format="json")

    assert response.status_code == 201, response.content
    assert TenantSettings.objects.get(tenant_id=response.json()["id"]).values == values


# --- webhook URLs at registration -------------------------------------------------------------------------

MALFORMED_URLS = [
    ("http://[::1", "valid url"), ("ftp://files.example.com/", "http or https"),
    ("hooks.example.com/x", "http or https"), ("http://hooks.example.com:99999/", "valid url"),
    ("http://hooks.example.com:0/", "port"), ("http:///only-a-path", "host"), ("http://exa mple.com/", "spaces"),
    ("https://bad_host!.example.com/", "host name"),
    ("https://hooks.example.com/" + "x" * 500, "500 characters"),
]


@pytest.mark.django_db
@pytest.mark.parametrize("url, reason", MALFORMED_URLS, ids=[case[0][:40] for case in MALFORMED_URLS])
def test_a_malformed_webhook_url_is_refused_naming_the_field(operator_client, url, reason):
    settings = {"notifications": {"webhooks": [{"url": "https://fine.example.com/"}, {"url": url}]}}

    response = operator_client.post(URL, body(settings=settings), format="json")

    assert_refused(response, "settings.notifications.webhooks[1].url", reason)


PLATFORM_ADDRESSES = [
    "http://127.0.0.1:8000/", "http://localhost/", "http://api.localhost./", "http://10.1.2.3/", "http://172.16.0.1/",
    "http://192.168.1.1/", "http://169.254.169.254/latest/meta-data/", "http://[::1]/", "http://[fe80::1]/",
    "http://224.0.0.1/", "http://0.0.0.0/", "http://2130706433/", "http://127.1/", "http://0x7f.0.0.1/",
    "http://[::ffff:127.0.0.1]/", "http://100.64.0.1/", "http://[fd00::1]/",
]


@pytest.mark.django_db
@pytest.mark.parametrize("url", PLATFORM_ADDRESSES)
def test_a_webhook_to_the_platforms_own_network_is_refused_at_registration(operator_client, url):
    settings = {"notifications": {"webhooks": [{"url": url}]}}

    response = operator_client.post(URL, body(settings=settings), format="json")

    assert_refused(response, "settings.notifications.webhooks[0].url", "platform's network")


@pytest.mark.django_db
def test_private_webhooks_are_allowed_when_the_platform_opts_in(operator_client):
    settings = {"notifications": {"webhooks": [{"url": "http://127.0.0.1:9/hook"}]}}

    with override_settings(MATIH_WEBHOOK_ALLOW_PRIVATE=True):
        response = operator_client.post(URL, body(settings=settings), format="json")

    assert response.status_code == 201, response.content


# --- webhook delivery -------------------------------------------------------------------------------------


class _Receiver(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        _Receiver.hits.append(self.path)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    _Receiver.hits = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


def finished_job_with_webhook(url: str) -> ProvisioningJob:
    """A COMPLETED job whose tenant has this webhook stored (as a row written before validation could be)."""
    tenant = Tenant.objects.create(name="Hooked", slug="hooked", tier="FREE", region="eastus",
                                   admin_email="admin@hooked.io", status="ACTIVE")
    TenantSettings.objects.create(tenant=tenant, values={"notifications": {"webhooks": [{"url": url, "secret": "k"}]}})
    return ProvisioningJob.objects.create(tenant=tenant, tier="FREE", status=JobStatus.COMPLETED)


def delivery_for(job: ProvisioningJob, url: str) -> WebhookDelivery:
    return WebhookDelivery.objects.create(job=job, url=url, event="provisioning.completed", payload={"jobId": "x"})


def attempt_until_settled(delivery: WebhookDelivery) -> list[notifications.DeliveryOutcome]:
    outcomes = []
    for _ in range(notifications.WEBHOOK_MAX_ATTEMPTS + 2):
        outcomes.append(notifications.deliver_webhook(delivery.id))
        if outcomes[-1].retry_in is None:
            break
    return outcomes


@pytest.mark.django_db
def test_a_malformed_stored_url_is_a_failed_attempt_on_the_ladder_until_it_gives_up(settings):
    settings.MATIH_WEBHOOK_BACKOFF = [1, 5, 30]
    job = finished_job_with_webhook("http://[::1")
    delivery = delivery_for(job, "http://[::1")

    first = notifications.deliver_webhook(delivery.id)
    delivery.refresh_from_db()
    assert (first.status, first.retry_in) == ("retrying", 1.0)
    assert delivery.status == "RETRYING" and delivery.attempts == 1 and "InvalidURL" in delivery.last_error
    assert delivery.next_attempt_at is not None

    outcomes = [first] + attempt_until_settled(delivery)

    delivery.refresh_from_db()
    assert [outcome.retry_in for outcome in outcomes] == [1.0, 5.0, 30.0, 30.0, 30.0, None]
    assert delivery.status == "GAVE_UP" and delivery.attempts == notifications.WEBHOOK_MAX_ATTEMPTS
    assert delivery.next_attempt_at is None
    assert notifications.deliver_webhook(delivery.id).status == "done"  # the sweeper's resend changes nothing
    assert WebhookDelivery.objects.get(id=delivery.id).attempts == notifications.WEBHOOK_MAX_ATTEMPTS


@pytest.mark.django_db
def test_a_name_that_resolves_to_the_platforms_network_is_refused_at_delivery(receiver):
    url = f"http://localhost:{receiver}/hook"  # registered while allowed, or re-pointed since
    delivery = delivery_for(finished_job_with_webhook(url), url)

    outcomes = attempt_until_settled(delivery)

    delivery.refresh_from_db()
    assert _Receiver.hits == [], "the worker sent a request to a loopback address"
    assert delivery.status == "GAVE_UP" and len(outcomes) == notifications.WEBHOOK_MAX_ATTEMPTS
    assert "loopback" in delivery.last_error and "MATIH_WEBHOOK_ALLOW_PRIVATE" in delivery.last_error


@pytest.mark.django_db
def test_a_private_receiver_gets_its_webhook_when_the_platform_opts_in(settings, receiver):
    settings.MATIH_WEBHOOK_ALLOW_PRIVATE = True
    url = f"http://localhost:{receiver}/hook"
    delivery = delivery_for(finished_job_with_webhook(url), url)

    assert notifications.deliver_webhook(delivery.id).status == "delivered"
    assert _Receiver.hits == ["/hook"]


def test_delivery_goes_to_the_checked_address_with_the_original_host(monkeypatch):
    resolved = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", 443))]
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: resolved)

    url, headers, extensions = notifications._pinned_request("https://hooks.example.com/matih?x=1")

    assert url == "https://93.184.215.14/matih?x=1"
    assert headers == {"Host": "hooks.example.com"} and extensions == {"sni_hostname": "hooks.example.com"}


def test_a_name_with_any_private_address_is_refused(monkeypatch):
    resolved = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", 443)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.7", 443))]
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: resolved)

    with pytest.raises(notifications.WebhookRefused, match="10.0.0.7 is a private address"):
        notifications._pinned_request("https://hooks.example.com/matih")


@pytest.mark.django_db
def test_settings_stored_before_validation_never_stop_the_notifications(monkeypatch, settings):
    settings.MATIH_WEBHOOK_URLS = ["https://platform.example.com/hook"]
    sent = []
    monkeypatch.setattr("provisioning.tasks.deliver_webhook.delay", sent.append)
    tenant = Tenant.objects.create(name="Old", slug="old-row", tier="FREE", region="eastus",
                                   admin_email="admin@old-row.io", status="ACTIVE")
    TenantSettings.objects.create(tenant=tenant, values={"notifications": "x"})
    job = ProvisioningJob.objects.create(tenant=tenant, tier="FREE", status=JobStatus.COMPLETED)

    notifications.notify_job_finished(job.id)

    assert [message.to for message in mail.outbox] == [["admin@old-row.io"]]
    assert [WebhookDelivery.objects.get(id=delivery_id).url for delivery_id in sent] == [
        "https://platform.example.com/hook"]


# --- metrics ------------------------------------------------------------------------------------------------


def metric_label_values(client, label: str) -> set[str]:
    values = set()
    for line in client.get("/metrics").content.decode().splitlines():
        if line.startswith("matih_http_requests_total{"):
            labels = dict(part.split("=", 1) for part in line[line.index("{") + 1:line.index("}")].split(","))
            values.add(labels[label].strip('"'))
    return values


@pytest.mark.django_db
def test_made_up_methods_count_as_one_label_value(client):
    for index in range(50):
        client.generic(f"ZZ{index}", "/healthz")
    client.generic("get", "/healthz")

    methods = metric_label_values(client, "method")

    assert "other" in methods
    assert methods <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT", "other"}


@pytest.mark.django_db
def test_raw_paths_never_become_route_labels(client):
    for index in range(20):
        client.get(f"/nothing-{index}")
        client.get(f"/api/v1/tenants/{index}/nothing")
        client.get(f"/admin/nothing-{index}/")

    routes = metric_label_values(client, "route")

    assert not any("nothing" in route for route in routes), routes


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
def test_operations_endpoints_answer_other_methods_with_a_json_405(client, path):
    """A probe's path answers a wrong method in the API's error shape, not with CSRF's HTML 403 page."""
    for method in ("post", "ZZ1", "delete"):
        response = client.generic(method, path)
        assert response.status_code == 405, (method, response.status_code)
        assert response["Content-Type"] == "application/json"
        assert response.json()["error"] == "method_not_allowed"
        assert response["Allow"] == "GET, HEAD"
    assert client.get(path).status_code in (200, 503)
    assert client.head(path).status_code in (200, 503)
