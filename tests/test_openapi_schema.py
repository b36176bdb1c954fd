"""The OpenAPI schema describes the API as it answers: nullable fields, the error answers in the one error
shape, the constraints the server enforces, the answers of jobs and events, and the SSE stream."""
from __future__ import annotations

import json

import pytest

from provisioning.engine.plans import plan_for
from tenants.serializers import RESERVED_SLUGS, SLUG_PATTERN

ERROR_REF = "#/components/schemas/Error"


@pytest.fixture(scope="module")
def schema(django_db_blocker) -> dict:
    from django.test import Client

    with django_db_blocker.unblock():
        response = Client().get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    return json.loads(response.content)


def component(schema: dict, name: str) -> dict:
    return schema["components"]["schemas"][name]


def operations(schema: dict):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            yield path, method.upper(), operation


def is_nullable(prop: dict) -> bool:
    kinds = prop.get("type")
    return prop.get("nullable") is True or (isinstance(kinds, list) and "null" in kinds) or any(
        branch.get("type") == "null" or branch.get("$ref", "").endswith("NullEnum") for branch in prop.get("oneOf", []))


def test_every_operation_documents_its_errors_in_the_error_shape(schema):
    for path, method, operation in operations(schema):
        responses = operation["responses"]
        expected = {"401", "404"} | ({"400", "403"} if not path.endswith("/stream") else set())
        if "requestBody" in operation:
            expected |= {"409", "413", "415"}
        assert expected <= set(responses), (method, path, sorted(responses))
        for code in expected:
            assert responses[code]["content"]["application/json"]["schema"] == {"$ref": ERROR_REF}, (method, path)
    registration = schema["paths"]["/api/v1/tenants"]["post"]["responses"]
    assert "429" in registration
    assert {"error", "detail"} <= set(component(schema, "Error")["required"])


@pytest.mark.parametrize("name, fields", [
    ("Tenant", ["provisionedAt", "deploymentType", "kubernetesNamespace", "azureAksClusterName", "dnsZone"]),
    ("RegistrationResponse", ["provisionedAt", "deploymentType", "kubernetesNamespace", "azureAksClusterName",
                              "dnsZone"]),
    ("ProvisioningStatus", ["errorMessage", "estimatedCompletion", "nextRetryAt", "jobId", "completedAt"]),
    ("ApiKey", ["lastUsedAt", "revokedAt"]),
])
def test_fields_that_are_null_in_real_answers_are_nullable(schema, name, fields):
    properties = component(schema, name)["properties"]
    assert [field for field in fields if not is_nullable(properties[field])] == []


def test_the_registration_body_is_one_variant_per_tier(schema):
    registration = component(schema, "TenantRegistration")
    assert registration["discriminator"]["propertyName"] == "tier"
    variants = {tier: component(schema, ref.rsplit("/", 1)[1])
                for tier, ref in registration["discriminator"]["mapping"].items()}
    assert set(variants) == {"FREE", "PROFESSIONAL", "ENTERPRISE"}
    for tier, variant in variants.items():
        assert variant["additionalProperties"] is False
        assert ("servicePrincipal" in variant["properties"]) == (tier == "ENTERPRISE")
        assert ("servicePrincipal" in variant.get("required", [])) == (tier == "ENTERPRISE")
        simulate = component(schema, variant["properties"]["simulate"]["$ref"].rsplit("/", 1)[1])
        assert set(simulate["properties"]["faults"]["properties"]) == set(plan_for(tier).step_names)
        assert simulate["properties"]["faults"]["additionalProperties"] is False
    free = variants["FREE"]["properties"]
    assert "ENTERPRISE only" in variants["FREE"]["description"]
    slug = free["slug"]
    assert (slug["minLength"], slug["maxLength"], slug["pattern"]) == (3, 63, SLUG_PATTERN.pattern)
    assert set(slug["not"]["enum"]) == RESERVED_SLUGS and "kube-system" in slug["description"]
    region = component(schema, "RegionEnum")
    assert region["enum"] == ["eastus", "eastus2", "westus2", "westeurope", "northeurope", "southeastasia"]
    shared_settings = component(schema, "SharedTenantSettings")
    assert shared_settings["additionalProperties"] is False and "quotas" not in shared_settings["properties"]
    assert {"quotas", "customConfig"} <= set(component(schema, "TenantSettings")["properties"])


def test_parameters_carry_their_formats(schema):
    create = schema["paths"]["/api/v1/tenants"]["post"]
    [key] = [parameter for parameter in create["parameters"] if parameter["name"] == "Idempotency-Key"]
    assert key["in"] == "header" and key["schema"]["maxLength"] == 255 and key["schema"]["pattern"]
    events = schema["paths"]["/api/v1/tenants/{tenant_id}/provisioning/events"]["get"]
    [after] = [parameter for parameter in events["parameters"] if parameter["name"] == "after"]
    assert after["schema"] == {"type": "integer", "minimum": 0}
    listing = {parameter["name"]: parameter for parameter in schema["paths"]["/api/v1/tenants"]["get"]["parameters"]}
    assert set(listing) >= {"status", "tier", "region", "search", "ordering", "page", "pageSize"}
    assert listing["ordering"]["schema"]["enum"] == ["createdAt", "-createdAt", "name", "slug"]


@pytest.mark.parametrize("path, name", [
    ("/api/v1/tenants/{tenant_id}/provisioning/jobs", "ProvisioningJobList"),
    ("/api/v1/tenants/{tenant_id}/provisioning/events", "ProvisioningEventList"),
    ("/api/v1/tenants/{tenant_id}/provisioning/status", "ProvisioningStatus"),
    ("/api/v1/tenants/slug/{slug}", "Tenant"),
    ("/api/v1/tenants/{tenant_id}/api-keys", "PaginatedApiKeyList"),
])
def test_answers_have_response_schemas(schema, path, name):
    ok = schema["paths"][path]["get"]["responses"]["200"]
    assert ok["content"]["application/json"]["schema"] == {"$ref": f"#/components/schemas/{name}"}


def test_the_sse_stream_is_in_the_schema_as_an_event_stream(schema):
    stream = schema["paths"]["/api/v1/tenants/{tenant_id}/provisioning/status/stream"]["get"]

    assert list(stream["responses"]["200"]["content"]) == ["text/event-stream"]
    assert stream["security"] and stream["parameters"][0]["name"] == "tenant_id"
    assert {"401", "404"} <= set(stream["responses"])
