"""A tenant's API keys over REST: list (never the secret), issue (shown once), revoke (refused at once).
Operators and the tenant's own keys may; a foreign tenant is 404 as if it did not exist."""
from __future__ import annotations

import uuid

import pytest

from iam.models import ApiKey, Membership, Role, User
from iam.services import api_key_create
from tenants import services
from tenants.models import Tenant
from tests.api_helpers import assert_error, client_with, register

URL = "/api/v1/tenants"
KEY_FIELDS = {"id", "name", "prefix", "createdAt", "lastUsedAt", "revokedAt"}


@pytest.fixture(autouse=True)
def no_dispatch(monkeypatch):
    monkeypatch.setattr(services, "_dispatch", lambda job_id: None)


@pytest.fixture
def north(operator_client) -> dict:
    return register(operator_client, "north-wind")


@pytest.fixture
def south(operator_client) -> dict:
    return register(operator_client, "south-wind")


def keys_url(tenant: dict) -> str:
    return f"{URL}/{tenant['id']}/api-keys"


@pytest.mark.django_db
def test_the_list_shows_the_tenants_keys_without_their_secrets(north):
    response = client_with(north["adminApiKey"]).get(keys_url(north))

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"count", "next", "previous", "results"}
    [key] = body["results"]
    assert set(key) == KEY_FIELDS
    stored = ApiKey.objects.get(tenant_id=north["id"])
    assert key["id"] == str(stored.id) and key["prefix"] == stored.prefix and key["revokedAt"] is None
    assert north["adminApiKey"].startswith(f"mk_{key['prefix']}_")
    text = response.content.decode()
    assert north["adminApiKey"] not in text and north["adminApiKey"].split("_", 2)[2] not in text
    assert stored.key_hash not in text


@pytest.mark.django_db
def test_a_new_key_is_shown_once_and_works(north):
    admin = client_with(north["adminApiKey"])

    created = admin.post(keys_url(north), {"name": "ci-deploy"}, format="json")

    assert created.status_code == 201, created.content
    body = created.json()
    assert set(body) == KEY_FIELDS | {"key"}
    assert body["name"] == "ci-deploy" and body["key"].startswith(f"mk_{body['prefix']}_")
    assert client_with(body["key"]).get(f"{URL}/{north['id']}").status_code == 200
    listed = admin.get(keys_url(north))
    assert {key["name"] for key in listed.json()["results"]} == {"admin (registration)", "ci-deploy"}
    assert body["key"] not in listed.content.decode()
    assert ApiKey.objects.get(id=body["id"]).user.email == "admin@north-wind.example.com"


@pytest.mark.django_db
def test_an_operators_new_key_belongs_to_the_tenant_and_sees_only_it(operator_client, north, south):
    created = operator_client.post(keys_url(north), {"name": "support"}, format="json")

    assert created.status_code == 201, created.content
    key = ApiKey.objects.select_related("user").get(id=created.json()["id"])
    assert str(key.tenant_id) == north["id"] and key.user.email == "admin@north-wind.example.com"
    client = client_with(created.json()["key"])
    assert [tenant["id"] for tenant in client.get(URL).json()["results"]] == [north["id"]]
    assert client.get(f"{URL}/{south['id']}").status_code == 404


@pytest.mark.django_db
def test_a_revoked_key_is_refused_from_the_next_request(north):
    admin = client_with(north["adminApiKey"])
    spare = admin.post(keys_url(north), {"name": "spare"}, format="json").json()
    assert client_with(spare["key"]).get(URL).status_code == 200

    revoked = admin.delete(f"{keys_url(north)}/{spare['id']}")

    assert revoked.status_code == 204 and revoked.content == b""
    assert_error(client_with(spare["key"]).get(URL), 401, "unauthenticated")
    listed = {key["id"]: key for key in admin.get(keys_url(north)).json()["results"]}
    assert listed[spare["id"]]["revokedAt"] is not None
    assert admin.get(URL).status_code == 200  # the other key lives on


@pytest.mark.django_db
def test_revoking_twice_is_204_and_keeps_the_first_revocation_time(operator_client, north):
    key_id = ApiKey.objects.get(tenant_id=north["id"]).id
    url = f"{keys_url(north)}/{key_id}"

    assert operator_client.delete(url).status_code == 204
    first = ApiKey.objects.get(id=key_id).revoked_at
    assert operator_client.delete(url).status_code == 204

    assert first is not None and ApiKey.objects.get(id=key_id).revoked_at == first


@pytest.mark.django_db
def test_a_key_may_revoke_itself(north):
    admin = client_with(north["adminApiKey"])
    key_id = ApiKey.objects.get(tenant_id=north["id"]).id

    assert admin.delete(f"{keys_url(north)}/{key_id}").status_code == 204
    assert_error(admin.get(URL), 401, "unauthenticated")


@pytest.mark.django_db
def test_a_foreign_tenants_keys_are_404_as_if_it_did_not_exist(north, south):
    admin = client_with(north["adminApiKey"])
    south_key = ApiKey.objects.get(tenant_id=south["id"])
    missing = f"{URL}/{uuid.uuid4()}/api-keys"

    for response, twin in [
        (admin.get(keys_url(south)), admin.get(missing)),
        (admin.post(keys_url(south), {"name": "x"}, format="json"), admin.post(missing, {"name": "x"}, format="json")),
        (admin.delete(f"{keys_url(south)}/{south_key.id}"), admin.delete(f"{missing}/{south_key.id}")),
    ]:
        assert_error(response, 404, "not_found")
        assert response.json() == twin.json()
    assert ApiKey.objects.get(id=south_key.id).revoked_at is None
    assert ApiKey.objects.filter(tenant_id=south["id"]).count() == 1


@pytest.mark.django_db
def test_another_tenants_key_id_under_ones_own_tenant_is_404(north, south):
    south_key = ApiKey.objects.get(tenant_id=south["id"])

    response = client_with(north["adminApiKey"]).delete(f"{keys_url(north)}/{south_key.id}")

    assert_error(response, 404, "not_found")
    assert ApiKey.objects.get(id=south_key.id).revoked_at is None


@pytest.mark.django_db
def test_a_user_without_keys_manage_may_not_touch_keys(north):
    tenant = Tenant.objects.get(id=north["id"])
    viewer = User.objects.create(email="viewer@north-wind.example.com", username="viewer@north-wind.example.com")
    Membership.objects.create(user=viewer, tenant=tenant, role=Role.objects.get(tenant=tenant, name=Role.VIEWER))
    client = client_with(api_key_create(user=viewer, tenant=tenant, name="viewer").raw)
    admin_key = ApiKey.objects.get(tenant=tenant, name="admin (registration)")

    assert_error(client.get(keys_url(north)), 403, "forbidden")
    assert_error(client.post(keys_url(north), {"name": "escalate"}, format="json"), 403, "forbidden")
    assert_error(client.delete(f"{keys_url(north)}/{admin_key.id}"), 403, "forbidden")
    assert ApiKey.objects.filter(tenant=tenant).count() == 2
    assert ApiKey.objects.get(id=admin_key.id).revoked_at is None


@pytest.mark.django_db
def test_keys_need_a_key(anonymous_client, north):
    assert_error(anonymous_client.get(keys_url(north)), 401, "unauthenticated")
    assert_error(anonymous_client.post(keys_url(north), {"name": "x"}, format="json"), 401, "unauthenticated")


@pytest.mark.django_db
@pytest.mark.parametrize("body, field, reason", [
    ({}, "name", "required"),
    ({"name": ""}, "name", "blank"),
    ({"name": "n" * 101}, "name", "no more than 100"),
    ({"name": 7}, "name", "not a valid string"),
    ({"name": "ok", "scopes": ["all"]}, "scopes", "unknown field"),
])
def test_a_bad_key_request_is_400_naming_the_field(north, body, field, reason):
    response = client_with(north["adminApiKey"]).post(keys_url(north), body, format="json")

    fields = assert_error(response, 400, "invalid_request")["fields"]
    assert any(reason in text.lower() for text in fields[field]), fields
    assert ApiKey.objects.filter(tenant_id=north["id"]).count() == 1


@pytest.mark.django_db
def test_an_operator_cannot_issue_a_key_for_a_tenant_without_an_active_administrator(operator_client, north):
    User.objects.filter(email="admin@north-wind.example.com").update(is_active=False)

    response = operator_client.post(keys_url(north), {"name": "orphan"}, format="json")

    assert_error(response, 409, "no_administrator")
    assert ApiKey.objects.filter(tenant_id=north["id"]).count() == 1
