"""POST /api/v1/tenants: concurrency, Idempotency-Key and the validation matrix.

Every refused registration answers with the error shape of matih/api.py
({"error", "detail", "fields"}), names the field and the reason, and leaves
nothing behind. No input, however odd, is a 500.
"""
from __future__ import annotations

import importlib
import json
import threading
from collections import Counter

import pytest
from django.apps import apps as django_apps
from django.conf import settings
from django.db import connections
from rest_framework.test import APIClient

from iam.models import User
from provisioning.models import ProvisioningJob
from provisioning.engine.plans import ALL_STEP_NAMES, plan_for
from tenants import services
from tenants.models import Tenant
from tests.api_helpers import assert_error
from tests.registration_rows import NOTHING, control_plane_rows

URL = "/api/v1/tenants"
# Threads see each other's commits only outside the test's transaction.
transactional = pytest.mark.django_db(transaction=True)
SERVICE_PRINCIPAL = {
    "clientId": "3f2a9c1e-client",
    "clientSecret": "s3cr3t-Value~With.Symbols",
    "azureTenantId": "72f988bf-tenant",
    "subscriptionId": "b1c2d3e4-subscription",
}


# --- helpers --------------------------------------------------------------------------


def assert_field_error(response, field: str, reason: str) -> None:
    body = assert_error(response, 400, "invalid_request")
    fields = body["fields"]
    assert field in fields, fields
    assert all(isinstance(text, str) and text for text in fields[field])
    assert any(reason.lower() in text.lower() for text in fields[field]), fields[field]


def post_raw(client: APIClient, payload: bytes | str, content_type: str = "application/json"):
    return client.generic("POST", URL, payload, content_type=content_type)


def run_concurrently(count: int, action) -> list:
    """Run action(index) in `count` threads released at once; each has its own DB connection."""
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def worker(index: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[index] = action(index)
        except BaseException as exc:  # reported to the test, not lost in the thread
            results[index] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a registration thread hung"
    return results


@pytest.fixture
def seeded_plans(transactional_db):
    """A transactional test starts after another's flush: put back the plans the data migration seeds."""
    importlib.import_module("billing.migrations.0002_seed_plans").seed(django_apps, None)


@pytest.fixture(autouse=True)
def no_dispatch(monkeypatch):
    """These tests are about the control plane; keep committed jobs off the shared broker."""
    dispatched: list = []
    monkeypatch.setattr(services, "_dispatch", lambda job: dispatched.append(job.id))
    return dispatched


# --- the happy path -------------------------------------------------------------------


@pytest.mark.django_db
def test_registration_answers_the_tenant_record_with_key_and_job(operator_client, registration_body):
    response = operator_client.post(URL, registration_body, format="json")

    assert response.status_code == 201
    body = response.json()
    tenant = Tenant.objects.get()
    assert body["id"] == str(tenant.id)
    assert body["slug"] == registration_body["slug"]
    assert body["status"] == "PROVISIONING"
    assert body["provisioningJobId"] == str(ProvisioningJob.objects.get(tenant=tenant).id)
    assert body["adminApiKey"]
    for field in ("provisionedAt", "deploymentType", "kubernetesNamespace", "azureAksClusterName", "dnsZone"):
        assert body[field] is None
    assert set(body) == {
        "id", "name", "slug", "tier", "status", "region", "adminEmail", "provisioningStartedAt", "provisionedAt",
        "deploymentType", "kubernetesNamespace", "azureAksClusterName", "dnsZone", "createdAt", "adminApiKey",
        "provisioningJobId", "suspendedAt", "suspensionReason", "deletionScheduledAt", "deletedAt",
    }


@pytest.mark.django_db
def test_taken_slug_is_409_slug_taken(operator_client, registration_body):
    assert operator_client.post(URL, registration_body, format="json").status_code == 201
    again = {**registration_body, "name": "Another Acme", "adminEmail": "other@acme.com"}

    body = assert_error(operator_client.post(URL, again, format="json"), 409, "slug_taken")

    assert "slug" in body["fields"]
    assert Tenant.objects.count() == 1


# --- concurrency ----------------------------------------------------------------------


@transactional
def test_twenty_concurrent_registrations_of_one_slug_create_one_tenant(
    seeded_plans, operator_key, registration_body
):
    def register(index: int):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {operator_key}")
        response = client.post(URL, registration_body, format="json")
        return response.status_code, response.json()

    results = run_concurrently(20, register)

    failures = [result for result in results if isinstance(result, BaseException)]
    assert not failures, failures
    statuses = Counter(status for status, _ in results)
    assert statuses == {201: 1, 409: 19}
    assert all(body["error"] == "slug_taken" for status, body in results if status == 409)
    rows = control_plane_rows()
    assert rows["tenants"] == rows["users"] == rows["jobs"] == rows["subscriptions"] == rows["settings"] == 1
    assert rows["roles"] == 3
    assert rows["tenantKeys"] == 1


@transactional
def test_concurrent_registrations_sharing_an_admin_email_all_succeed(
    seeded_plans, operator_key, registration_body
):
    def register(index: int):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {operator_key}")
        response = client.post(URL, {**registration_body, "slug": f"acme-{index}"}, format="json")
        return response.status_code

    results = run_concurrently(8, register)

    assert results == [201] * 8
    assert Tenant.objects.count() == 8
    admin = User.objects.get(email=registration_body["adminEmail"])
    assert admin.memberships.count() == 8


# --- Idempotency-Key ------------------------------------------------------------------


@pytest.mark.django_db
def test_idempotent_replay_gives_the_same_answer_and_creates_nothing(operator_client, registration_body):
    first = operator_client.post(URL, registration_body, format="json", HTTP_IDEMPOTENCY_KEY="order-42")
    assert first.status_code == 201
    rows = control_plane_rows()

    reordered = dict(reversed(list(registration_body.items())))
    replay = operator_client.post(URL, reordered, format="json", HTTP_IDEMPOTENCY_KEY="order-42")

    assert replay.status_code == 201
    assert replay.json() == first.json()
    assert replay.json()["id"] == first.json()["id"]
    assert replay.json()["provisioningJobId"] == first.json()["provisioningJobId"]
    assert replay.json()["adminApiKey"] == first.json()["adminApiKey"]
    assert control_plane_rows() == rows


@pytest.mark.django_db
def test_idempotency_key_reused_with_another_body_is_409(operator_client, registration_body):
    assert operator_client.post(URL, registration_body, format="json", HTTP_IDEMPOTENCY_KEY="k-1").status_code == 201
    rows = control_plane_rows()

    other = {**registration_body, "slug": "acme-two"}
    response = operator_client.post(URL, other, format="json", HTTP_IDEMPOTENCY_KEY="k-1")

    assert_error(response, 409, "idempotency_key_reused")
    assert control_plane_rows() == rows


@pytest.mark.django_db
def test_the_same_idempotency_key_of_two_callers_does_not_collide(operator_client, registration_body):
    from iam.services import api_key_create, operator_get_or_create

    other_operator = APIClient()
    other_key = api_key_create(user=operator_get_or_create(email="second@matih.test")).raw
    other_operator.credentials(HTTP_AUTHORIZATION=f"Bearer {other_key}")

    first = operator_client.post(URL, registration_body, format="json", HTTP_IDEMPOTENCY_KEY="shared")
    second = other_operator.post(
        URL, {**registration_body, "slug": "acme-two"}, format="json", HTTP_IDEMPOTENCY_KEY="shared"
    )

    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json()["id"] != second.json()["id"]


@transactional
def test_concurrent_requests_with_one_idempotency_key_create_one_tenant(
    seeded_plans, operator_key, registration_body
):
    def register(index: int):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {operator_key}")
        response = client.post(URL, registration_body, format="json", HTTP_IDEMPOTENCY_KEY="twin-request")
        return response.status_code, response.json()

    results = run_concurrently(5, register)

    failures = [result for result in results if isinstance(result, BaseException)]
    assert not failures, failures
    assert [status for status, _ in results] == [201] * 5
    assert len({body["id"] for _, body in results}) == 1
    assert len({body["adminApiKey"] for _, body in results}) == 1
    rows = control_plane_rows()
    assert rows["tenants"] == rows["jobs"] == rows["tenantKeys"] == rows["idempotencyRecords"] == 1


@pytest.mark.django_db
@pytest.mark.parametrize("key", ["", "k" * 256, "tab\tinside", "caf\u00e9"])
def test_bad_idempotency_key_is_400(operator_client, registration_body, key):
    response = operator_client.post(URL, registration_body, format="json", HTTP_IDEMPOTENCY_KEY=key)

    assert_field_error(response, "Idempotency-Key", "characters")
    assert control_plane_rows() == NOTHING


# --- the validation matrix ------------------------------------------------------------

ENTERPRISE = {"tier": "ENTERPRISE", "servicePrincipal": SERVICE_PRINCIPAL}
LONG_VALID_EMAIL = "a" * 64 + "@" + "b" * 60 + "." + "c" * 60 + ".com"

# (case id, change to the valid body (None removes the field), field named, reason)
FIELD_CASES = [
    ("missing-name", {"name": None}, "name", "required"),
    ("missing-slug", {"slug": None}, "slug", "required"),
    ("missing-tier", {"tier": None}, "tier", "required"),
    ("missing-region", {"region": None}, "region", "required"),
    ("missing-adminEmail", {"adminEmail": None}, "adminEmail", "required"),
    ("unknown-field", {"colour": "blue"}, "colour", "unknown field"),
    ("blank-name", {"name": "   "}, "name", "blank"),
    ("name-too-long", {"name": "n" * 201}, "name", "no more than 200"),
    ("slug-too-short", {"slug": "ab"}, "slug", "at least 3"),
    ("slug-too-long", {"slug": "a" * 64}, "slug", "no more than 63"),
    ("slug-uppercase", {"slug": "Acme"}, "slug", "DNS label"),
    ("slug-underscore", {"slug": "ac_me"}, "slug", "DNS label"),
    ("slug-leading-hyphen", {"slug": "-acme"}, "slug", "DNS label"),
    ("slug-trailing-hyphen", {"slug": "acme-"}, "slug", "DNS label"),
    ("slug-space", {"slug": "ac me"}, "slug", "DNS label"),
    ("reserved-admin", {"slug": "admin"}, "slug", "reserved"),
    ("reserved-api", {"slug": "api"}, "slug", "reserved"),
    ("reserved-www", {"slug": "www"}, "slug", "reserved"),
    ("reserved-kube-system", {"slug": "kube-system"}, "slug", "reserved"),
    ("unknown-tier", {"tier": "GOLD"}, "tier", "must be one of"),
    ("lowercase-tier", {"tier": "free"}, "tier", "must be one of"),
    ("unknown-region", {"region": "mars-north-1"}, "region", "unknown region"),
    ("bad-email", {"adminEmail": "not-an-email"}, "adminEmail", "valid email"),
    ("email-too-long-for-a-user", {"adminEmail": LONG_VALID_EMAIL}, "adminEmail", "no more than"),
    ("name-number", {"name": 42}, "name", "not a valid string"),
    ("name-bool", {"name": True}, "name", "not a valid string"),
    ("name-object", {"name": {"first": "Acme"}}, "name", "not a valid string"),
    ("name-null", {"name": "\u0000"}, "name", "null characters"),
    ("settings-list", {"settings": ["a", "b"]}, "settings", "dictionary"),
    ("settings-string", {"settings": "dark"}, "settings", "dictionary"),
    ("tier-number", {"tier": 1}, "tier", "must be one of"),
    ("region-number", {"region": 7}, "region", "not a valid string"),
    ("email-number", {"adminEmail": 12345}, "adminEmail", "valid email"),
    ("null-name", {"name": "__null__"}, "name", "may not be null"),
    ("null-settings", {"settings": "__null__"}, "settings", "may not be null"),
    ("enterprise-without-service-principal", {"tier": "ENTERPRISE"}, "servicePrincipal", "required"),
    ("service-principal-on-free", {"tier": "FREE", "servicePrincipal": SERVICE_PRINCIPAL},
     "servicePrincipal", "only enterprise"),
    ("service-principal-list", {**ENTERPRISE, "servicePrincipal": [SERVICE_PRINCIPAL]},
     "servicePrincipal", "expected a json object"),
    ("service-principal-missing-secret",
     {**ENTERPRISE, "servicePrincipal": {k: v for k, v in SERVICE_PRINCIPAL.items() if k != "clientSecret"}},
     "servicePrincipal.clientSecret", "required"),
    ("service-principal-unknown-field", {**ENTERPRISE, "servicePrincipal": {**SERVICE_PRINCIPAL, "password": "x"}},
     "servicePrincipal.password", "unknown field"),
    ("service-principal-secret-number", {**ENTERPRISE, "servicePrincipal": {**SERVICE_PRINCIPAL, "clientSecret": 9}},
     "servicePrincipal.clientSecret", "not a valid string"),
    ("unknown-fault-step", {"simulate": {"faults": {"LAUNCH_ROCKET": {"mode": "transient"}}}},
     "simulate.faults", "unknown step"),
    ("unknown-fault-mode", {"simulate": {"faults": {sorted(ALL_STEP_NAMES)[0]: {"mode": "sometimes"}}}},
     f"simulate.faults.{sorted(ALL_STEP_NAMES)[0]}.mode", "not a valid choice"),
    ("simulate-list", {"simulate": ["faults"]}, "simulate", "expected a json object"),
    ("settings-nul", {"settings": {"motto": "a\u0000b"}}, "settings.motto", "null characters"),
    ("settings-nul-key", {"settings": {"a\u0000b": 1}}, "settings", "null characters"),
    ("name-lone-surrogate", {"name": "\ud800acme"}, "name", "surrogate"),
    ("settings-deep", {"settings": json.loads('{"a":' * 40 + "1" + "}" * 40)}, "settings", "nested"),
]


def body_with(base: dict, change: dict) -> dict:
    body = dict(base)
    for key, value in change.items():
        if value is None:
            body.pop(key, None)
        elif value == "__null__":
            body[key] = None
        else:
            body[key] = value
    return body


@pytest.mark.django_db
@pytest.mark.parametrize("change, field, reason", [case[1:] for case in FIELD_CASES], ids=[c[0] for c in FIELD_CASES])
def test_bad_field_is_400_naming_field_and_reason(operator_client, registration_body, change, field, reason):
    body = body_with(registration_body, change)
    # json.dumps escapes NUL and lone surrogates, as a client's encoder would.
    response = post_raw(operator_client, json.dumps(body))

    assert_field_error(response, field, reason)
    assert control_plane_rows() == NOTHING


@pytest.mark.django_db
def test_every_field_error_is_reported_at_once(operator_client):
    response = operator_client.post(URL, {"slug": "Admin", "tier": "GOLD", "extra": 1}, format="json")

    body = assert_error(response, 400, "invalid_request")
    assert {"name", "slug", "tier", "region", "adminEmail", "extra"} <= set(body["fields"])


@pytest.mark.django_db
def test_oversized_body_is_413_naming_the_body(operator_client, registration_body):
    body = {**registration_body, "settings": {"padding": "x" * settings.MATIH_MAX_BODY_BYTES}}

    response = post_raw(operator_client, json.dumps(body))

    fields = assert_error(response, 413, "payload_too_large")["fields"]
    assert any("larger than" in reason for reason in fields["body"]), fields
    assert control_plane_rows() == NOTHING


# (case id, raw body, field named, reason)
BODY_CASES = [
    ("malformed", b'{"name": "Acme", ', "body", "not valid JSON"),
    ("empty", b"", "name", "required"),
    ("list", b'[{"name": "Acme"}]', "body", "JSON object"),
    ("string", b'"acme"', "body", "JSON object"),
    ("number", b"42", "body", "JSON object"),
    ("null", b"null", "body", "JSON object"),
    ("not-utf8", b'{"name": "\xff\xfe\xfd"}', "body", "not valid JSON"),
    ("latin1", '{"name": "Caf\u00e9"}'.encode("latin-1"), "body", "not valid JSON"),
    ("deeply-nested-list", b"[" * 30000 + b"]" * 30000, "body", "nested"),
    ("deeply-nested-object", b'{"a":' * 5000 + b"1" + b"}" * 5000, "body", "nested"),
    ("nan", b'{"settings": {"ratio": NaN}}', "body", "not valid JSON"),
    ("infinity", b'{"settings": {"ratio": -Infinity}}', "body", "not valid JSON"),
    ("float-overflow", b'{"settings": {"ratio": 1e400}}', "body", "not valid JSON"),
    ("huge-integer", b'{"settings": {"n": ' + b"9" * 5000 + b"}}", "body", "not valid JSON"),
    ("trailing-garbage", b'{"name": "Acme"} {}', "body", "not valid JSON"),
]


@pytest.mark.django_db
@pytest.mark.parametrize("payload, field, reason", [case[1:] for case in BODY_CASES], ids=[c[0] for c in BODY_CASES])
def test_unreadable_body_is_400(operator_client, payload, field, reason):
    response = post_raw(operator_client, payload)

    assert_field_error(response, field, reason)
    assert control_plane_rows() == NOTHING


@pytest.mark.django_db
def test_a_form_body_is_415(operator_client, registration_body):
    response = operator_client.post(URL, registration_body)  # multipart, not JSON

    assert_error(response, 415, "unsupported_media_type")
    assert control_plane_rows() == NOTHING


ODD_BODIES = [
    {"name": None, "slug": None, "tier": None, "region": None, "adminEmail": None},
    {"name": [], "slug": {}, "tier": [], "region": {}, "adminEmail": []},
    {"name": "x" * 60000, "slug": "acme", "tier": "FREE", "region": "eastus", "adminEmail": "a@b.co"},
    {"name": "Acme", "slug": "s" * 60000, "tier": "FREE", "region": "eastus", "adminEmail": "a@b.co"},
    {"name": "Acme", "slug": "acme", "tier": "FREE", "region": "r" * 60000, "adminEmail": "a@b.co"},
    {"name": "Acme", "slug": "acme", "tier": "FREE", "region": "eastus", "adminEmail": "@" * 60000},
    {"name": "Acme", "slug": "acme", "tier": "FREE", "region": "eastus", "adminEmail": "a@b.co",
     "settings": {"nested": [[[[{"deep": [None, True, 1.5, "x"]}]]]]}, "simulate": {"faults": []}},
    {"name": "Acme", "slug": "acme", "tier": "ENTERPRISE", "region": "eastus", "adminEmail": "a@b.co",
     "servicePrincipal": {"clientId": None, "clientSecret": [], "azureTenantId": {}, "subscriptionId": 1}},
    {"name": "Acme", "slug": "acme", "tier": "FREE", "region": "eastus", "adminEmail": "a@b.co",
     "simulate": {"faults": {"": None}, "timeScale": "fast"}},
    {"name": "Acme", "slug": "acme", "tier": "FREE", "region": "eastus", "adminEmail": "a@b.co",
     "simulate": {"faults": {sorted(ALL_STEP_NAMES)[0]: {"mode": "transient", "times": 10**30}}}},
    {"name": "\ud83d\ude00 Acme", "slug": "\u0430cme", "tier": "FREE", "region": "eastus",
     "adminEmail": "admin@acme.com"},
    {"": "", "__proto__": {}, "constructor": "x"},
    {"name": "Acme", "slug": "acme", "tier": ["FREE"], "region": ["eastus"], "adminEmail": ["a@b.co"]},
]


@pytest.mark.django_db
@pytest.mark.parametrize("body", ODD_BODIES, ids=[f"odd-{index}" for index in range(len(ODD_BODIES))])
def test_odd_input_is_a_400_never_a_500(operator_client, body):
    response = post_raw(operator_client, json.dumps(body))

    body = assert_error(response, 400, "invalid_request")
    assert body["fields"]
    assert control_plane_rows() == NOTHING


@pytest.mark.django_db
def test_a_valid_fault_injection_from_an_operator_is_accepted(operator_client, registration_body):
    step = plan_for(registration_body["tier"]).step_names[-1]
    simulate = {"faults": {step: {"mode": "transient", "times": 2}}, "timeScale": 0.001}

    response = operator_client.post(URL, {**registration_body, "simulate": simulate}, format="json")

    assert response.status_code == 201
    job = ProvisioningJob.objects.get(id=response.json()["provisioningJobId"])
    assert job.context["simulate"]["faults"][step] == {"mode": "transient", "times": 2}


@pytest.mark.django_db
def test_enterprise_registration_never_returns_the_client_secret(operator_client, registration_body):
    body = {**registration_body, **ENTERPRISE}

    created = operator_client.post(URL, body, format="json")
    assert created.status_code == 201
    tenant_id = created.json()["id"]
    detail = operator_client.get(f"{URL}/{tenant_id}")
    listing = operator_client.get(URL)

    for response in (created, detail, listing):
        assert response.status_code == 200 or response.status_code == 201
        assert SERVICE_PRINCIPAL["clientSecret"] not in response.content.decode()
        assert "servicePrincipal" not in response.content.decode()
