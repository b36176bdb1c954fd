"""The benchmark's floor (bench/floor) does the registration's work: same validation, same rows.

If the product's tables change, the floor must follow, or the benchmark compares the
product with less work than it does.
"""
from __future__ import annotations

import pytest
from rest_framework.test import APIRequestFactory

from bench.floor.views import Registration
from tests.registration_rows import NOTHING, control_plane_rows


def floor_post(body: dict):
    request = APIRequestFactory().post("/api/v1/tenants", body, format="json")
    return Registration.as_view()(request)


@pytest.mark.django_db
def test_floor_writes_the_rows_a_registration_writes(operator_client, registration_body):
    assert operator_client.post("/api/v1/tenants", registration_body, format="json").status_code == 201
    one_registration = control_plane_rows()

    answer = floor_post({**registration_body, "slug": "acme-floor", "adminEmail": "admin@acme-floor.com"})

    assert answer.status_code == 201, answer.data
    assert control_plane_rows() == {table: 2 * count for table, count in one_registration.items()}
    assert set(answer.data) == set(operator_client.post(
        "/api/v1/tenants", {**registration_body, "slug": "acme-third", "adminEmail": "admin@acme-third.com"},
        format="json").json())


@pytest.mark.django_db
@pytest.mark.parametrize("change", [
    {"slug": "Not_A_Label"}, {"slug": "api"}, {"slug": "ab"}, {"tier": "GOLD"}, {"region": "mars"},
    {"adminEmail": "not-an-email"}, {"name": ""}, {"unexpected": 1}, {"settings": "not an object"},
])
def test_floor_refuses_what_the_product_refuses(operator_client, registration_body, change):
    body = {**registration_body, **change}
    assert operator_client.post("/api/v1/tenants", body, format="json").status_code == 400
    assert floor_post(body).status_code == 400
    assert control_plane_rows() == NOTHING
