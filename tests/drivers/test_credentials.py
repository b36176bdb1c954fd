"""Service principal validation: the real azure-identity ClientSecretCredential against a local Entra stub."""
from __future__ import annotations

import logging
import socket

import pytest

from deploy.credentials import AzureServicePrincipals
from deploy.errors import PermanentInfraError, TransientInfraError
from tests.drivers.fake_entra import FakeEntra

TENANT, CLIENT, SECRET, SUB = "72f988bf-0000-0000-0000-000000000001", "app-1234", "s3cr3t-value", "sub-0001"


@pytest.fixture
def entra(tmp_path):
    server = FakeEntra(tmp_path, tenant_id=TENANT, client_id=CLIENT, client_secret=SECRET).start()
    server.subscriptions[SUB] = "Enabled"
    yield server
    server.stop()


@pytest.fixture
def principals(entra):
    return AzureServicePrincipals(authority=entra.authority, arm_endpoint=entra.url,
                                  connection_verify=str(entra.cert_path))


def validate(principals, **overrides):
    values = {"client_id": CLIENT, "client_secret": SECRET, "azure_tenant_id": TENANT, "subscription_id": SUB}
    return principals.validate_service_principal(**{**values, **overrides})


def test_a_working_principal_is_validated_without_leaking_its_secret(principals, entra, caplog):
    caplog.set_level(logging.DEBUG)
    result = validate(principals)

    assert result["clientId"] == CLIENT and result["subscriptionState"] == "Enabled"
    assert SECRET not in repr(result) and SECRET not in caplog.text
    (token_request,) = [form for method, path, form in entra.requests if method == "POST"]
    assert token_request["grant_type"] == "client_credentials" and token_request["client_id"] == CLIENT
    assert token_request["scope"] == f"{entra.url}/.default"


@pytest.mark.parametrize("overrides,aadsts", [
    ({"client_secret": "wrong"}, "AADSTS7000215"),
    ({"azure_tenant_id": "00000000-0000-0000-0000-00000000dead"}, "AADSTS90002"),
    ({"client_id": "no-such-app"}, "AADSTS700016"),
])
def test_a_refused_credential_is_permanent(principals, overrides, aadsts):
    with pytest.raises(PermanentInfraError) as caught:
        validate(principals, **overrides)
    assert aadsts in caught.value.provider_message
    assert "clientSecret" in caught.value.hint


def test_a_subscription_the_principal_cannot_see_is_permanent(principals):
    with pytest.raises(PermanentInfraError) as caught:
        validate(principals, subscription_id="sub-elsewhere")
    assert "SubscriptionNotFound" in caught.value.provider_message


def test_a_disabled_subscription_is_permanent(principals, entra):
    entra.subscriptions[SUB] = "Disabled"
    with pytest.raises(PermanentInfraError) as caught:
        validate(principals)
    assert "Disabled" in caught.value.message


def test_an_incomplete_principal_is_permanent(principals):
    with pytest.raises(PermanentInfraError):
        validate(principals, client_secret="")


def test_an_unreachable_authority_is_transient():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    principals = AzureServicePrincipals(authority=f"https://127.0.0.1:{port}", arm_endpoint=f"https://127.0.0.1:{port}")
    with pytest.raises(TransientInfraError):
        validate(principals)
