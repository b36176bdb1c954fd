"""The real credentials driver: prove a tenant's Azure service principal works before Terraform uses it.

1. Get a token for ARM with azure-identity's ClientSecretCredential (the
   authority is overridable: sovereign clouds, tests). Microsoft Entra refusing
   the client (wrong secret, unknown tenant or client) is permanent; a network
   failure is transient.
2. With that token, read the subscription from ARM: it must exist, be visible to
   the principal and be Enabled (403/404/disabled are permanent).
Only ids and states come back; the secret and the token never leave this module.
"""
from __future__ import annotations

import logging
import re

from azure.core import PipelineClient
from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError, ServiceResponseError
from azure.core.pipeline.policies import BearerTokenCredentialPolicy, RetryPolicy
from azure.core.pipeline.transport import RequestsTransport
from azure.core.rest import HttpRequest
from azure.identity import ClientSecretCredential

from deploy.errors import PermanentInfraError, TransientInfraError

logger = logging.getLogger(__name__)

SUBSCRIPTION_API_VERSION = "2022-12-01"
NETWORK_FAILURE = re.compile(
    r"failed to establish|connection (refused|reset|aborted)|timed out|timeout|name resolution|"
    r"max retries exceeded|temporarily unavailable|service unavailable|\b(429|502|503|504)\b",
    re.IGNORECASE,
)


class AzureServicePrincipals:
    """CredentialsDriver for Azure service principals."""

    def __init__(self, *, authority: str = "login.microsoftonline.com",
                 arm_endpoint: str = "https://management.azure.com", connection_verify: bool | str = True,
                 check_subscription: bool = True, timeout: float = 30):
        self.authority = authority
        self.arm_endpoint = arm_endpoint.rstrip("/")
        self.connection_verify = connection_verify
        self.check_subscription = check_subscription
        self.timeout = timeout

    @property
    def scope(self) -> str:
        return f"{self.arm_endpoint}/.default"

    def _transport(self) -> RequestsTransport:
        return RequestsTransport(connection_verify=self.connection_verify, connection_timeout=self.timeout,
                                 read_timeout=self.timeout)

    def validate_service_principal(self, *, client_id: str, client_secret: str, azure_tenant_id: str,
                                   subscription_id: str) -> dict:
        if not (client_id and client_secret and azure_tenant_id and subscription_id):
            raise PermanentInfraError("the service principal is incomplete",
                                      hint="clientId, clientSecret, azureTenantId and subscriptionId are required")
        credential = ClientSecretCredential(
            azure_tenant_id, client_id, client_secret, authority=self.authority,
            disable_instance_discovery=self.authority != "login.microsoftonline.com",
            transport=self._transport(), retry_total=0,
        )
        try:
            token = credential.get_token(self.scope)
            result = {"clientId": client_id, "azureTenantId": azure_tenant_id, "subscriptionId": subscription_id,
                      "tokenExpiresOn": token.expires_on}
            if self.check_subscription:
                result["subscriptionState"] = self._subscription_state(credential, subscription_id)
        except ClientAuthenticationError as exc:
            if NETWORK_FAILURE.search(exc.message or str(exc)):
                # azure-identity wraps network failures in ClientAuthenticationError too:
                # without an answer from Entra, nothing says the credential is bad.
                raise TransientInfraError("Microsoft Entra ID unreachable while validating the service principal",
                                          provider_message=_first_line(exc.message or str(exc)),
                                          hint="a network problem; retrying may succeed") from exc
            raise PermanentInfraError(
                "Microsoft Entra ID refused the tenant's service principal",
                provider_message=_first_line(exc.message or str(exc)),
                hint="check clientId, clientSecret (not expired) and azureTenantId, then register again",
            ) from exc
        except (ServiceRequestError, ServiceResponseError) as exc:
            raise TransientInfraError("Microsoft Entra ID or ARM unreachable while validating the service principal",
                                      provider_message=_first_line(str(exc)),
                                      hint="a network problem; retrying may succeed") from exc
        finally:
            credential.close()
        logger.info("service principal %s of tenant %s validated for subscription %s",
                    client_id, azure_tenant_id, subscription_id)
        return result

    def _subscription_state(self, credential, subscription_id: str) -> str:
        client = PipelineClient(
            base_url=self.arm_endpoint, transport=self._transport(),
            policies=[RetryPolicy(retry_total=0), BearerTokenCredentialPolicy(credential, self.scope)],
        )
        request = HttpRequest("GET", f"{self.arm_endpoint}/subscriptions/{subscription_id}",
                              params={"api-version": SUBSCRIPTION_API_VERSION})
        with client:
            response = client.send_request(request)
        if response.status_code in (429,) or response.status_code >= 500:
            raise TransientInfraError(f"ARM answered {response.status_code} reading the subscription",
                                      provider_message=response.text()[:500],
                                      retry_after=_float(response.headers.get("Retry-After")))
        if response.status_code != 200:
            raise PermanentInfraError(
                f"the service principal cannot read subscription {subscription_id} ({response.status_code})",
                provider_message=response.text()[:500],
                hint="grant the principal a role (Contributor) on the subscription, or fix subscriptionId",
            )
        state = response.json().get("state", "")
        if state != "Enabled":
            raise PermanentInfraError(f"subscription {subscription_id} is {state or 'not enabled'}",
                                      hint="only an Enabled subscription can host a dedicated cluster")
        return state


def _first_line(text: str) -> str:
    return (text or "").strip().splitlines()[0] if text and text.strip() else ""


def _float(value) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
