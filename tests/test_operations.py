"""What an operator runs and watches: health, metrics, the API schema and docs,
the operator_key command, and the structured JSON logs (with no secrets in them)."""
from __future__ import annotations

import io
import json
import logging
import re

import pytest
from django.contrib.staticfiles import finders
from django.core.management import CommandError, call_command
from django.test import override_settings
from rest_framework.test import APIClient

from iam.models import ApiKey, User
from matih.observability import ContextFilter, JsonFormatter
from tenants import services

URL = "/api/v1/tenants"
SERVICE_PRINCIPAL = {
    "clientId": "3f2a9c1e-client",
    "clientSecret": "s3cr3t-Value~With.Symbols",
    "azureTenantId": "72f988bf-tenant",
    "subscriptionId": "b1c2d3e4-subscription",
}
# The seed's six control-plane operations, as the registration log line names them.
SIX_OPERATIONS = {
    "createTenantRecord", "createAdminUser", "configureBilling", "setDefaultRoles", "initializeSettings",
    "createApiKey",
}


@pytest.fixture(autouse=True)
def no_dispatch(monkeypatch):
    """These tests are about the control plane; keep jobs off the shared broker."""
    monkeypatch.setattr(services, "_dispatch", lambda job_id: None)


@pytest.fixture
def json_log():
    """The lines the production JSON handler writes, parsed; `.text()` gives them raw."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.addHandler(handler)

    class Log:
        @staticmethod
        def text() -> str:
            return stream.getvalue()

        @staticmethod
        def lines() -> list[dict]:
            return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]

    yield Log
    root.removeHandler(handler)


def client_with(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


# --- health and readiness ----------------------------------------------------------------


def test_healthz_answers_without_touching_the_database(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json()["status"] == "ok"


@pytest.mark.django_db
def test_readyz_checks_the_database_and_the_broker(client):
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "broker": "ok"}


@pytest.mark.django_db
def test_readyz_is_503_naming_the_broker_when_it_is_down(client):
    with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):
        response = client.get("/readyz")

    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["database"] == "ok"
    assert checks["broker"] != "ok" and checks["broker"]


# --- metrics ------------------------------------------------------------------------------


def requests_counted(metrics_text: str, route: str, status: str) -> float:
    total = 0.0
    for line in metrics_text.splitlines():
        if line.startswith("matih_http_requests_total{") and f'route="{route}"' in line and f'status="{status}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.mark.django_db
def test_metrics_count_requests_by_route_in_prometheus_text(client, operator_client):
    before = requests_counted(client.get("/metrics").content.decode(), "/healthz", "200")
    client.get("/healthz")
    operator_client.get(f"{URL}/7f0c5a3e-0000-4000-8000-000000000000")

    response = client.get("/metrics")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    text = response.content.decode()
    assert "# TYPE matih_http_requests_total counter" in text
    assert requests_counted(text, "/healthz", "200") == before + 1
    assert "matih_http_request_duration_seconds_bucket" in text
    # Routes are the URL patterns, not the paths: ids do not explode the label set.
    assert requests_counted(text, "/api/v1/tenants/<uuid:tenant_id>", "404") >= 1
    assert "7f0c5a3e-0000-4000-8000-000000000000" not in text


# --- schema and docs ---------------------------------------------------------------------


@pytest.mark.django_db
def test_the_schema_is_openapi_3_with_the_tenant_api_and_bearer_auth(client):
    response = client.get("/api/schema/", {"format": "json"})

    assert response.status_code == 200
    schema = json.loads(response.content)
    assert schema["openapi"].startswith("3.")
    assert "/api/v1/tenants" in schema["paths"]
    assert "/api/v1/tenants/{tenant_id}" in schema["paths"]
    create = schema["paths"]["/api/v1/tenants"]["post"]
    assert "201" in create["responses"]
    assert any(parameter["name"] == "Idempotency-Key" for parameter in create["parameters"])
    schemes = schema["components"]["securitySchemes"]
    assert {"type": "http", "scheme": "bearer"}.items() <= next(iter(schemes.values())).items()
    assert any(schemes.keys() & requirement.keys() for requirement in create["security"])


@pytest.mark.django_db
def test_the_docs_page_uses_only_local_assets(client):
    response = client.get("/api/docs/")

    assert response.status_code == 200
    html = response.content.decode()
    assert re.findall(r"https?://", html) == []
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert assets, "the docs page loads no assets?"
    for asset in assets:
        assert asset.startswith("/static/"), asset
        assert finders.find(asset.removeprefix("/static/")), f"{asset} is not installed"


# --- operator_key --------------------------------------------------------------------------


def run_operator_key(*arguments: str) -> str:
    stdout, stderr = io.StringIO(), io.StringIO()
    call_command("operator_key", *arguments, stdout=stdout, stderr=stderr)
    return stdout.getvalue().strip().splitlines()[-1]


@pytest.mark.django_db
def test_operator_key_prints_a_working_operator_key_last():
    key = run_operator_key("ops@matih.test")

    client = client_with(key)
    assert client.get(URL).status_code == 200
    body = {"name": "Acme", "slug": "acme", "tier": "FREE", "region": "eastus", "adminEmail": "admin@acme.com"}
    assert client.post(URL, body, format="json").status_code == 201  # only operators may register


@pytest.mark.django_db
def test_operator_key_twice_reuses_the_operator_and_gives_two_working_keys():
    first = run_operator_key("ops@matih.test")
    second = run_operator_key("OPS@matih.test")

    assert first != second
    operator = User.objects.get(email="ops@matih.test")
    assert operator.is_staff
    assert not operator.has_usable_password()
    assert ApiKey.objects.filter(user=operator, tenant__isnull=True).count() == 2
    for key in (first, second):
        assert client_with(key).get(URL).status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("email", ["not-an-email", "", "a" * 64 + "@" + "b" * 60 + "." + "c" * 60 + ".com"])
def test_operator_key_refuses_a_bad_email(email):
    with pytest.raises(CommandError):
        run_operator_key(email)

    assert not User.objects.exists()


# --- structured logs ---------------------------------------------------------------------


@pytest.mark.django_db
def test_a_registration_logs_one_json_line_with_operation_timings(operator_client, json_log):
    body = {"name": "Acme", "slug": "acme", "tier": "FREE", "region": "eastus", "adminEmail": "admin@acme.com"}

    response = operator_client.post(URL, body, format="json")

    assert response.status_code == 201
    lines = json_log.lines()  # every line parses as JSON
    registered = [line for line in lines if line["msg"] == "tenant registered"]
    assert len(registered) == 1
    line = registered[0]
    assert line["tenantId"] == response.json()["id"]
    assert line["jobId"] == response.json()["provisioningJobId"]
    assert SIX_OPERATIONS <= set(line["timingsMs"])
    assert all(isinstance(ms, (int, float)) and ms >= 0 for ms in line["timingsMs"].values())
    assert line["totalMs"] >= max(line["timingsMs"].values())
    assert line["requestId"] == response["X-Request-ID"]
    access = [line for line in lines if line["logger"] == "matih.access"]
    assert [(entry["status"], entry["requestId"]) for entry in access] == [(201, response["X-Request-ID"])]


@pytest.mark.django_db
def test_an_incoming_request_id_is_echoed_and_logged(operator_client, json_log):
    response = operator_client.get(URL, HTTP_X_REQUEST_ID="edge-7f3a.42")

    assert response["X-Request-ID"] == "edge-7f3a.42"
    assert [line["requestId"] for line in json_log.lines() if line["logger"] == "matih.access"] == ["edge-7f3a.42"]


@pytest.mark.django_db
@pytest.mark.parametrize("incoming", ["has spaces in it", "x" * 65, "new\nline", ""])
def test_an_unsafe_request_id_is_replaced(operator_client, incoming):
    response = operator_client.get(URL, HTTP_X_REQUEST_ID=incoming)

    assert response["X-Request-ID"] != incoming
    assert re.fullmatch(r"[A-Za-z0-9._\-]{1,64}", response["X-Request-ID"])


@pytest.mark.django_db
def test_keys_and_client_secrets_never_reach_the_logs(operator_client, operator_key, json_log, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)
    enterprise = {"name": "Big Co", "slug": "big-co", "tier": "ENTERPRISE", "region": "eastus",
                  "adminEmail": "admin@big.co", "servicePrincipal": SERVICE_PRINCIPAL}

    created = operator_client.post(URL, enterprise, format="json", HTTP_IDEMPOTENCY_KEY="big-co-1")
    assert created.status_code == 201
    admin_key = created.json()["adminApiKey"]
    operator_client.post(URL, enterprise, format="json", HTTP_IDEMPOTENCY_KEY="big-co-1")  # replay
    operator_client.post(URL, {**enterprise, "slug": "Big_Co"}, format="json")  # 400
    operator_client.post(URL, enterprise, format="json")  # 409
    client_with(admin_key).get(f"{URL}/{created.json()['id']}")
    client_with(admin_key).get(URL, {"token": admin_key})
    client_with(admin_key + "x").get(URL)  # 401
    original = services.create_api_key

    def failing_create_api_key(**kwargs):
        original(**kwargs)
        raise RuntimeError("the key store is down")

    monkeypatch.setattr(services, "create_api_key", failing_create_api_key)
    failed = operator_client.post(URL, {**enterprise, "slug": "big-co-two"}, format="json")  # 500
    assert failed.status_code == 500
    logging.getLogger("matih.test").warning("careless: %s", admin_key, extra={"header": f"Bearer {admin_key}"})

    logged = json_log.text() + caplog.text
    assert "RuntimeError" in json_log.text()  # the failure itself was logged
    for secret in (SERVICE_PRINCIPAL["clientSecret"], admin_key.split("_", 2)[2], operator_key.split("_", 2)[2]):
        assert secret not in json_log.text()
    assert SERVICE_PRINCIPAL["clientSecret"] not in logged
    assert admin_key.split("_", 2)[2] not in "\n".join(
        record.getMessage() for record in caplog.records if record.name != "matih.test"
    )
