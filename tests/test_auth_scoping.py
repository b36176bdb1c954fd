"""Who may do what: bearer keys, operator vs tenant scoping, and open signup."""
from __future__ import annotations

import uuid

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from iam.models import ApiKey
from iam.services import api_key_create, api_key_revoke, operator_get_or_create
from provisioning.engine.plans import ALL_STEP_NAMES
from tenants import services
from tenants.models import Tenant
from tests.api_helpers import assert_error, client_with, register

URL = "/api/v1/tenants"


@pytest.fixture(autouse=True)
def no_dispatch(monkeypatch):
    """These tests are about the control plane; keep jobs off the shared broker."""
    monkeypatch.setattr(services, "_dispatch", lambda job_id: None)


@pytest.fixture
def two_tenants(operator_client):
    return register(operator_client, "north-wind"), register(operator_client, "south-wind")


# --- authentication -------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("path", [URL, f"{URL}/{uuid.uuid4()}"])
def test_no_key_is_401(anonymous_client, path):
    response = anonymous_client.get(path)

    assert_error(response, 401, "unauthenticated")
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.django_db
@pytest.mark.parametrize("header", [
    "Bearer mk_00000000_not-a-real-key-at-all-but-long-enough",
    "Bearer not-even-shaped-like-a-key",
    "Bearer " + "mk_" + "x" * 500,
    "Bearer ",
    "Basic dXNlcjpwYXNz",
    "mk_00000000_missing-the-scheme",
])
def test_bad_key_is_401(header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)

    assert_error(client.get(URL), 401, "unauthenticated")


@pytest.mark.django_db
def test_revoked_key_is_401(operator_client, two_tenants):
    north, _ = two_tenants
    tenant_client = client_with(north["adminApiKey"])
    assert tenant_client.get(f"{URL}/{north['id']}").status_code == 200

    api_key_revoke(api_key=ApiKey.objects.get(tenant_id=north["id"]))

    assert_error(tenant_client.get(f"{URL}/{north['id']}"), 401, "unauthenticated")


@pytest.mark.django_db
def test_key_of_a_deactivated_user_is_401(operator_client, two_tenants):
    north, _ = two_tenants
    key = ApiKey.objects.select_related("user").get(tenant_id=north["id"])
    key.user.is_active = False
    key.user.save(update_fields=["is_active"])

    assert_error(client_with(north["adminApiKey"]).get(URL), 401, "unauthenticated")


@pytest.mark.django_db
def test_the_bearer_scheme_is_case_insensitive(operator_key):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"bearer {operator_key}")

    assert client.get(URL).status_code == 200


@pytest.mark.django_db
def test_using_a_key_records_its_last_use(operator_client, operator_key):
    assert operator_client.get(URL).status_code == 200

    assert ApiKey.objects.get(tenant__isnull=True, name="tests").last_used_at is not None


# --- scoping ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_tenant_key_reads_its_own_tenant(two_tenants):
    north, _ = two_tenants

    response = client_with(north["adminApiKey"]).get(f"{URL}/{north['id']}")

    assert response.status_code == 200
    assert response.json()["slug"] == "north-wind"


@pytest.mark.django_db
def test_tenant_key_on_another_tenant_is_404_as_if_it_did_not_exist(two_tenants):
    north, south = two_tenants
    tenant_client = client_with(north["adminApiKey"])

    foreign = tenant_client.get(f"{URL}/{south['id']}")
    missing = tenant_client.get(f"{URL}/{uuid.uuid4()}")

    assert_error(foreign, 404, "not_found")
    assert foreign.json() == missing.json()


@pytest.mark.django_db
def test_tenant_key_lists_only_its_tenant(two_tenants):
    north, _ = two_tenants

    response = client_with(north["adminApiKey"]).get(URL)

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 1
    assert [tenant["id"] for tenant in body["results"]] == [north["id"]]


@pytest.mark.django_db
def test_operator_sees_every_tenant(operator_client, two_tenants):
    response = operator_client.get(URL)

    assert response.status_code == 200
    assert {tenant["id"] for tenant in response.json()["results"]} == {tenant["id"] for tenant in two_tenants}
    for tenant in two_tenants:
        assert operator_client.get(f"{URL}/{tenant['id']}").status_code == 200


@pytest.mark.django_db
def test_a_staff_members_tenant_key_is_still_only_a_tenant_key(operator_client, two_tenants):
    north, south = two_tenants
    staff = operator_get_or_create(email="staff@matih.test")
    tenant_key = api_key_create(user=staff, tenant=Tenant.objects.get(id=north["id"])).raw

    client = client_with(tenant_key)

    assert client.get(URL).json()["count"] == 1
    assert client.get(f"{URL}/{south['id']}").status_code == 404


@pytest.mark.django_db
def test_tenant_key_cannot_register_tenants(two_tenants):
    north, _ = two_tenants
    body = {"name": "Sneaky", "slug": "sneaky", "tier": "FREE", "region": "eastus", "adminEmail": "a@sneaky.io"}

    response = client_with(north["adminApiKey"]).post(URL, body, format="json")

    assert_error(response, 403, "forbidden")
    assert not Tenant.objects.filter(slug="sneaky").exists()


@pytest.mark.django_db
def test_the_list_is_paginated(operator_client):
    for index in range(3):
        register(operator_client, f"paged-{index}")

    first = operator_client.get(URL, {"pageSize": 2})
    second = operator_client.get(first.json()["next"])

    assert first.status_code == second.status_code == 200
    page_one, page_two = first.json(), second.json()
    assert set(page_one) == {"count", "next", "previous", "results"}
    assert page_one["count"] == page_two["count"] == 3
    assert len(page_one["results"]) == 2 and page_one["previous"] is None
    assert len(page_two["results"]) == 1 and page_two["next"] is None
    slugs = [tenant["slug"] for tenant in page_one["results"] + page_two["results"]]
    assert sorted(slugs) == ["paged-0", "paged-1", "paged-2"]


@pytest.mark.django_db
def test_a_page_past_the_end_is_404(operator_client):
    register(operator_client, "lonely")

    assert_error(operator_client.get(URL, {"page": 9}), 404, "not_found")


@pytest.mark.django_db
def test_unsupported_methods_are_405(operator_client, two_tenants):
    north, _ = two_tenants

    assert_error(operator_client.patch(f"{URL}/{north['id']}", {}, format="json"), 405, "method_not_allowed")
    assert_error(operator_client.put(URL, {}, format="json"), 405, "method_not_allowed")


# --- open signup -----------------------------------------------------------------------

SIGNUP = {"name": "Newcomer", "tier": "FREE", "region": "eastus"}


def signup_body(slug: str) -> dict:
    return {**SIGNUP, "slug": slug, "adminEmail": f"owner@{slug}.example.com"}


@pytest.fixture
def fresh_throttle_cache():
    """The throttle counts in the cache; give each test its own, empty one."""
    location = f"signup-throttle-{uuid.uuid4()}"
    with override_settings(CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                                               "LOCATION": location}}):
        yield


@pytest.mark.django_db
def test_without_open_signup_anonymous_registration_is_401(anonymous_client):
    with override_settings(MATIH_OPEN_SIGNUP=False):
        response = anonymous_client.post(URL, signup_body("walk-in"), format="json")

    assert_error(response, 401, "unauthenticated")
    assert not Tenant.objects.exists()


@pytest.mark.django_db
def test_open_signup_lets_anyone_register_and_use_the_new_key(fresh_throttle_cache, anonymous_client):
    with override_settings(MATIH_OPEN_SIGNUP=True, MATIH_SIGNUP_RATE="100/hour"):
        response = anonymous_client.post(URL, signup_body("walk-in"), format="json")

    assert response.status_code == 201
    own = client_with(response.json()["adminApiKey"]).get(f"{URL}/{response.json()['id']}")
    assert own.status_code == 200
    assert anonymous_client.get(URL).status_code == 401  # open signup opens registration, not reading


@pytest.mark.django_db
def test_open_signup_is_throttled_per_client_address(fresh_throttle_cache, operator_client):
    with override_settings(MATIH_OPEN_SIGNUP=True, MATIH_SIGNUP_RATE="3/hour"):
        client = APIClient(REMOTE_ADDR="198.51.100.7")
        # A client that invents X-Forwarded-For does not get a fresh allowance.
        answers = [
            client.post(URL, signup_body(f"walk-in-{index}"), format="json", HTTP_X_FORWARDED_FOR=f"10.0.0.{index}")
            for index in range(4)
        ]
        elsewhere = APIClient(REMOTE_ADDR="198.51.100.8").post(URL, signup_body("walk-in-far"), format="json")
        operator = operator_client.post(URL, signup_body("walk-in-op"), format="json")

    assert [answer.status_code for answer in answers[:3]] == [201, 201, 201]
    assert_error(answers[3], 429, "throttled")
    assert int(answers[3]["Retry-After"]) > 0
    assert elsewhere.status_code == 201
    assert operator.status_code == 201  # operators are not throttled
    assert not Tenant.objects.filter(slug="walk-in-3").exists()


@pytest.mark.django_db
def test_open_signup_lets_a_tenant_key_register_too_throttled(fresh_throttle_cache, two_tenants):
    north, _ = two_tenants
    with override_settings(MATIH_OPEN_SIGNUP=True, MATIH_SIGNUP_RATE="1/hour"):
        client = client_with(north["adminApiKey"])
        first = client.post(URL, signup_body("second-shop"), format="json")
        second = client.post(URL, signup_body("third-shop"), format="json")

    assert first.status_code == 201
    assert_error(second, 429, "throttled")


@pytest.mark.django_db
def test_only_operators_may_inject_faults(fresh_throttle_cache, anonymous_client, two_tenants):
    north, _ = two_tenants
    simulate = {"faults": {sorted(ALL_STEP_NAMES)[0]: {"mode": "permanent"}}}
    with override_settings(MATIH_OPEN_SIGNUP=True, MATIH_SIGNUP_RATE="100/hour"):
        anonymous = anonymous_client.post(URL, {**signup_body("faulty"), "simulate": simulate}, format="json")
        tenant = client_with(north["adminApiKey"]).post(
            URL, {**signup_body("faulty"), "simulate": simulate}, format="json"
        )

    for response in (anonymous, tenant):
        body = assert_error(response, 400, "invalid_request")
        assert any("operator" in reason for reason in body["fields"]["simulate"])
    assert not Tenant.objects.filter(slug="faulty").exists()


@pytest.mark.django_db
def test_fault_injection_needs_the_simulated_cloud(operator_client):
    simulate = {"faults": {sorted(ALL_STEP_NAMES)[0]: {"mode": "permanent"}}}
    with override_settings(MATIH_INFRA_BACKEND="azure"):
        response = operator_client.post(URL, {**signup_body("real-cloud"), "simulate": simulate}, format="json")

    body = assert_error(response, 400, "invalid_request")
    assert any("simulated" in reason for reason in body["fields"]["simulate"])
