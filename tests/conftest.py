"""Shared fixtures. The database is PostgreSQL (DATABASE_URL or the embedded one); the real parts
(worker, sweeper, ASGI server) are tests/harness.py, one of each per session."""
from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from iam.services import api_key_create, operator_get_or_create

pytest_plugins = ["tests.harness"]

REGISTRATION = {
    "name": "Acme Corporation",
    "slug": "acme",
    "tier": "PROFESSIONAL",
    "region": "eastus",
    "adminEmail": "admin@acme.com",
}


@pytest.fixture
def registration_body():
    return dict(REGISTRATION)


@pytest.fixture
def operator_key(db) -> str:
    user = operator_get_or_create(email="operator@matih.test")
    return api_key_create(user=user, name="tests").raw


@pytest.fixture
def operator_client(operator_key) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {operator_key}")
    return client


@pytest.fixture
def anonymous_client() -> APIClient:
    return APIClient()
