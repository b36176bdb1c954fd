"""Finding tenants: GET /tenants filters and ordering, GET /tenants/slug/{slug}, with the key's scoping."""
from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from tenants import services
from tenants.models import Tenant

URL = "/api/v1/tenants"


@pytest.fixture(autouse=True)
def no_dispatch(monkeypatch):
    monkeypatch.setattr(services, "_dispatch", lambda job_id: None)


def register(client: APIClient, slug: str, *, name: str, tier: str = "FREE", region: str = "eastus",
             email: str | None = None) -> dict:
    body = {"name": name, "slug": slug, "tier": tier, "region": region,
            "adminEmail": email or f"admin@{slug}.example.com"}
    if tier == "ENTERPRISE":
        body["servicePrincipal"] = {"clientId": "c", "clientSecret": "s", "azureTenantId": "t", "subscriptionId": "s"}
    response = client.post(URL, body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


@pytest.fixture
def fleet(operator_client) -> dict[str, dict]:
    """Four tenants, registered in this order (so createdAt orders them so)."""
    tenants = {
        "delta": register(operator_client, "delta-dairy", name="Delta Dairy", tier="FREE", region="eastus"),
        "alpha": register(operator_client, "alpha-apples", name="Alpha Apples", tier="PROFESSIONAL",
                          region="westeurope", email="ops@orchard.example.org"),
        "charlie": register(operator_client, "charlie-cheese", name="Charlie Cheese", tier="ENTERPRISE",
                            region="westeurope"),
        "bravo": register(operator_client, "bravo-bread", name="bravo bread", tier="FREE", region="eastus"),
    }
    Tenant.objects.filter(id=tenants["charlie"]["id"]).update(status="ACTIVE")
    return tenants


def slugs(response) -> list[str]:
    assert response.status_code == 200, response.content[:300]
    return [tenant["slug"] for tenant in response.json()["results"]]


def assert_bad_parameter(response, parameter: str) -> None:
    assert response.status_code == 400, response.content[:300]
    body = response.json()
    assert body["error"] == "invalid_request"
    assert parameter in body["fields"], body
    assert parameter in body["detail"]


@pytest.mark.django_db
@pytest.mark.parametrize("query, expected", [
    ({"status": "ACTIVE"}, ["charlie-cheese"]),
    ({"status": "PROVISIONING"}, ["bravo-bread", "alpha-apples", "delta-dairy"]),
    ({"tier": "FREE"}, ["bravo-bread", "delta-dairy"]),
    ({"region": "westeurope"}, ["charlie-cheese", "alpha-apples"]),
    ({"tier": "FREE", "region": "westeurope"}, []),
    ({"search": "CHEESE"}, ["charlie-cheese"]),  # the name, any case
    ({"search": "bread"}, ["bravo-bread"]),  # the slug
    ({"search": "orchard.example"}, ["alpha-apples"]),  # the admin email
    ({"search": ""}, ["bravo-bread", "charlie-cheese", "alpha-apples", "delta-dairy"]),
    ({"ordering": "createdAt"}, ["delta-dairy", "alpha-apples", "charlie-cheese", "bravo-bread"]),
    ({"ordering": "-createdAt"}, ["bravo-bread", "charlie-cheese", "alpha-apples", "delta-dairy"]),
    ({"ordering": "slug"}, ["alpha-apples", "bravo-bread", "charlie-cheese", "delta-dairy"]),
    ({"ordering": "slug", "tier": "FREE", "search": "a"}, ["bravo-bread", "delta-dairy"]),
])
def test_the_list_filters_and_orders(operator_client, fleet, query, expected):
    assert slugs(operator_client.get(URL, query)) == expected


@pytest.mark.django_db
def test_ordering_by_name_follows_the_names(operator_client, fleet):
    names = [tenant["name"] for tenant in operator_client.get(URL, {"ordering": "name"}).json()["results"]]

    assert names == list(Tenant.objects.order_by("name").values_list("name", flat=True))  # the database's collation
    assert names.index("Alpha Apples") < names.index("Charlie Cheese") < names.index("Delta Dairy")


@pytest.mark.django_db
@pytest.mark.parametrize("parameter, value", [
    ("status", "RUNNING"), ("status", "active"), ("status", ""), ("tier", "GOLD"), ("region", "mars-north-1"),
    ("ordering", "-name"), ("ordering", "created_at"), ("search", "s" * 201), ("search", "a\x00b"),
])
def test_a_bad_query_value_is_400_naming_the_parameter(operator_client, fleet, parameter, value):
    assert_bad_parameter(operator_client.get(URL, {parameter: value}), parameter)


@pytest.mark.django_db
def test_filters_never_widen_a_tenant_keys_view(fleet):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {fleet['alpha']['adminApiKey']}")

    assert slugs(client.get(URL, {"region": "westeurope"})) == ["alpha-apples"]
    assert slugs(client.get(URL, {"search": "cheese"})) == []


@pytest.mark.django_db
def test_a_tenant_is_found_by_its_slug(operator_client, fleet):
    response = operator_client.get(f"{URL}/slug/alpha-apples")

    assert response.status_code == 200
    assert response.json() == operator_client.get(f"{URL}/{fleet['alpha']['id']}").json()


@pytest.mark.django_db
@pytest.mark.parametrize("slug", ["no-such-shop", "ALPHA-APPLES", "alpha_apples"])
def test_an_unknown_slug_is_404(operator_client, fleet, slug):
    response = operator_client.get(f"{URL}/slug/{slug}")

    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


@pytest.mark.django_db
def test_a_foreign_tenants_slug_is_404_as_if_it_did_not_exist(fleet):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {fleet['alpha']['adminApiKey']}")

    own = client.get(f"{URL}/slug/alpha-apples")
    foreign = client.get(f"{URL}/slug/bravo-bread")
    missing = client.get(f"{URL}/slug/no-such-shop")

    assert own.status_code == 200
    assert foreign.status_code == 404 and foreign.json() == missing.json()


@pytest.mark.django_db
def test_the_slug_lookup_needs_a_key(anonymous_client, fleet):
    assert anonymous_client.get(f"{URL}/slug/alpha-apples").status_code == 401
