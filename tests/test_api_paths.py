"""Every path under /api/ answers with or without its trailing slash and with a UUID in either case;
anything else under /api/ (and /ws/ over HTTP) is a JSON 404 in the error shape, never Django's HTML page."""
from __future__ import annotations

import uuid

import pytest
from django.http import JsonResponse
from django.test import override_settings
from django.urls import path

from matih.paths import ApiPathFallback
from tenants import services

URL = "/api/v1/tenants"


@pytest.fixture(autouse=True)
def no_dispatch(monkeypatch):
    monkeypatch.setattr(services, "_dispatch", lambda job_id: None)


@pytest.fixture
def tenant(operator_client, registration_body) -> dict:
    response = operator_client.post(URL, registration_body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def assert_json_404(response) -> None:
    assert response.status_code == 404, response.content[:300]
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    assert body["error"] == "not_found"
    assert isinstance(body["detail"], str) and body["detail"]


@pytest.mark.django_db
def test_the_tenant_list_answers_with_a_trailing_slash(operator_client, tenant):
    response = operator_client.get(f"{URL}/")

    assert response.status_code == 200
    assert [row["id"] for row in response.json()["results"]] == [tenant["id"]]


@pytest.mark.django_db
def test_registration_answers_with_a_trailing_slash(operator_client, registration_body):
    response = operator_client.post(f"{URL}/", registration_body, format="json")

    assert response.status_code == 201, response.content
    assert response.json()["slug"] == registration_body["slug"]


@pytest.mark.django_db
@pytest.mark.parametrize("suffix", ["", "/provisioning/status", "/provisioning/jobs", "/provisioning/events"])
@pytest.mark.parametrize("slash", ["", "/"])
@pytest.mark.parametrize("case", ["lower", "upper"])
def test_tenant_paths_answer_in_every_spelling(operator_client, tenant, suffix, slash, case):
    tenant_id = tenant["id"].upper() if case == "upper" else tenant["id"]

    response = operator_client.get(f"{URL}/{tenant_id}{suffix}{slash}")

    assert response.status_code == 200, response.content[:300]
    body = response.json()
    assert body.get("id", body.get("tenantId", tenant["id"])) == tenant["id"]


@pytest.mark.django_db
def test_a_post_in_the_other_spelling_reaches_the_same_view(operator_client, tenant):
    response = operator_client.post(f"{URL}/{tenant['id'].upper()}/provisioning/cancel/", format="json")

    assert response.status_code in (202, 409), response.content[:300]
    assert "error" not in response.json() or response.json()["error"] == "conflict"


@pytest.mark.django_db
def test_the_schema_answers_without_its_slash(client):
    response = client.get("/api/schema", {"format": "json"})

    assert response.status_code == 200
    assert response.json()["openapi"].startswith("3.")


@pytest.mark.django_db
@pytest.mark.parametrize("unknown", [
    "/api/v1/tenants/not-a-uuid", "/api/v1/tenants/not-a-uuid/", "/api/v1/nothing-here", "/api/v2/tenants",
    "/api/", "/api", "/api/v1/tenants/00000000-0000-0000-0000-00000000000g", "/ws/tenants/x/provisioning/",
])
def test_an_unknown_path_is_a_json_404(operator_client, unknown):
    assert_json_404(operator_client.get(unknown))
    assert_json_404(operator_client.post(unknown, {}, format="json"))


@pytest.mark.django_db
def test_an_unknown_path_is_a_json_404_without_a_key_too(anonymous_client):
    assert_json_404(anonymous_client.get("/api/v1/tenants/not-a-uuid"))


@pytest.mark.django_db
def test_a_method_not_allowed_in_the_other_spelling_is_405_in_the_error_shape(operator_client):
    response = operator_client.put(f"{URL}/", {}, format="json")

    assert response.status_code == 405
    assert response.json()["error"] == "method_not_allowed"


@pytest.mark.django_db
def test_a_missing_tenant_in_the_other_spelling_is_the_same_404(operator_client):
    missing = str(uuid.uuid4())

    canonical = operator_client.get(f"{URL}/{missing}")
    other = operator_client.get(f"{URL}/{missing.upper()}/")

    assert_json_404(other)
    assert other.json() == canonical.json()


@pytest.mark.django_db
def test_pages_outside_the_api_keep_djangos_404(client):
    response = client.get("/no-such-page")

    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


def requests_counted(client, route: str) -> float:
    text = client.get("/metrics").content.decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("matih_http_requests_total{") and f'route="{route}"' in line)


@pytest.mark.django_db
def test_the_metrics_label_of_the_other_spelling_is_the_route_template(client, operator_client, tenant):
    template, unmatched = "/api/v1/tenants/<uuid:tenant_id>", "unmatched"
    before = requests_counted(client, template), requests_counted(client, unmatched)

    operator_client.get(f"{URL}/{tenant['id'].upper()}/")
    operator_client.get("/api/v1/definitely/not/here/" + "x" * 40)

    assert (requests_counted(client, template), requests_counted(client, unmatched)) == (before[0] + 1, before[1] + 1)
    text = client.get("/metrics").content.decode()
    assert tenant["id"].upper() not in text and "definitely" not in text


# A route someone adds later, in a URLconf of its own, gets the other spellings with no work.
def _widgets(request, widget_id=None):
    return JsonResponse({"widget": str(widget_id) if widget_id else None})


_later = [path("api/v1/widgets", _widgets), path("api/v1/widgets/<uuid:widget_id>", _widgets)]
urlpatterns = [*_later, ApiPathFallback(_later)]


@override_settings(ROOT_URLCONF=__name__)
def test_a_route_added_later_answers_in_every_spelling_for_free(client):
    widget = uuid.uuid4()

    assert client.get("/api/v1/widgets/").json() == {"widget": None}
    assert client.get(f"/api/v1/widgets/{str(widget).upper()}/").json() == {"widget": str(widget)}
    assert_json_404(client.get("/api/v1/gadgets"))
