"""Helpers of the REST tests: a client with a key, a FREE tenant registered by an operator, the error shape."""
from __future__ import annotations

from rest_framework.test import APIClient

URL = "/api/v1/tenants"


def client_with(key: str | None, **defaults) -> APIClient:
    client = APIClient(**defaults)
    if key is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def register(operator_client: APIClient, slug: str) -> dict:
    """A FREE tenant `slug` with admin@{slug}.example.com; the registration's answer."""
    body = {"name": f"Tenant {slug}", "slug": slug, "tier": "FREE", "region": "eastus",
            "adminEmail": f"admin@{slug}.example.com"}
    response = operator_client.post(URL, body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def assert_error(response, status: int, code: str) -> dict:
    """The answer is `status` in the error shape with this code; its body."""
    assert response.status_code == status, response.content[:500]
    body = response.json()
    assert body["error"] == code
    assert isinstance(body["detail"], str) and body["detail"]
    return body
