"""The real DNS driver: Azure DNS through azure-mgmt-dns and azure-identity.

A tenant gets a child zone `{slug}.{parent}` in the platform's resource group,
an NS record set `{slug}` in the parent zone that delegates to the child zone's
Azure name servers, and A records `@`, `*`, `api`, `bi` to its ingress IP.

`ensure_zone`:
1. GET the child zone; when absent, PUT it with If-None-Match: * (a concurrent
   creator makes that 412/409: read it again). A zone tagged for another tenant
   is a permanent error: two tenants never share a zone.
2. PUT the A record sets (PUT is create-or-replace: drift is corrected each time).
3. PUT the NS delegation in the parent last, so the name resolves only once the
   child zone answers.
`delete_zone` removes the delegation first (resolvers stop being sent to the
child), then the zone with its records; "not found" is success.
`ensure_zone` with another ingress IP repoints the A records (PUT replaces a
record set): the ENTERPRISE cut-over. `zone_state` and `leftovers` read what
Azure holds, never a record of ours.

Errors: 401/403 and other 4xx are permanent; 429 (Retry-After honoured), 409,
5xx and network failures are transient.
"""
from __future__ import annotations

import logging

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.mgmt.dns import DnsManagementClient
from azure.mgmt.dns.models import ARecord, NsRecord, RecordSet, Zone

from deploy import inventory
from deploy.errors import InfraError, PermanentInfraError, TransientInfraError
from deploy.interfaces import TenantSpec

logger = logging.getLogger(__name__)

A_LABELS = inventory.DNS_A_LABELS
TENANT_TAG = "matih-tenant-id"


def _retry_after(exc: HttpResponseError) -> float | None:
    response = getattr(exc, "response", None)
    value = response.headers.get("Retry-After") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def classify_azure_error(exc: Exception, what: str) -> InfraError:
    """Map an azure-core exception to a transient or permanent infrastructure error."""
    if isinstance(exc, (ServiceRequestError, ServiceResponseError)):
        return TransientInfraError(f"Azure unreachable during {what}", provider_message=str(exc),
                                   hint="check the network path to the ARM endpoint; retrying may succeed")
    status = getattr(exc, "status_code", None)
    code = getattr(getattr(exc, "error", None), "code", None) or ""
    message = getattr(exc, "message", None) or str(exc)
    text = f"Azure refused {what}" + (f": {status} {code}".rstrip() if status else "")
    if isinstance(exc, ClientAuthenticationError) and status is None:
        return PermanentInfraError(f"Azure credentials refused during {what}", provider_message=message,
                                   hint="check the platform's Azure identity (MATIH_AZURE_CLIENT_ID/SECRET)")
    if status in (401, 403):
        return PermanentInfraError(text, provider_message=message,
                                   hint="the platform's identity needs the 'DNS Zone Contributor' role on the "
                                        "resource group")
    if status == 429 or status == 409 or (status is not None and status >= 500):
        return TransientInfraError(text, provider_message=message, retry_after=_retry_after(exc),
                                   hint="Azure is throttling or busy with this zone; retry later")
    if status == 404 and code == "ParentResourceNotFound":
        return PermanentInfraError(text, provider_message=message,
                                   hint="the parent zone (MATIH_DNS_PARENT_ZONE) must exist in the resource group")
    return PermanentInfraError(text, provider_message=message, hint="the request was rejected; fix and retry")


class AzureDnsDriver:
    """DnsDriver for Azure DNS. `client` may be given directly; otherwise built from the arguments."""

    def __init__(self, *, subscription_id: str, resource_group: str, credential=None,
                 base_url: str = "https://management.azure.com", connection_verify: bool | str = True,
                 ttl: int = 300, retries: int = 0, polling_interval: float = 5, client=None):
        self.resource_group = resource_group
        self.ttl = ttl
        self.polling_interval = polling_interval
        if client is None:
            if credential is None:
                from azure.identity import DefaultAzureCredential

                credential = DefaultAzureCredential()
            # The orchestrator owns retries: the SDK's own retry policy is off by default
            # so a 429's Retry-After reaches the job instead of blocking a worker.
            client = DnsManagementClient(
                credential, subscription_id, base_url=base_url, connection_verify=connection_verify,
                credential_scopes=[base_url.rstrip("/") + "/.default"], retry_total=retries,
                polling_interval=polling_interval,
            )
        self.client = client

    # --- names -------------------------------------------------------------------------

    @staticmethod
    def delegation_label(spec: TenantSpec) -> str:
        return inventory.delegation_label(spec)

    def records(self, spec: TenantSpec, ingress_ip: str) -> list[dict]:
        """The record sets ensure_zone writes (the NS values are the name servers Azure assigns the zone)."""
        records = [{"zone": spec.dns_zone, "name": label, "type": "A", "ttl": self.ttl, "values": [ingress_ip]}
                   for label in A_LABELS]
        records.append({"zone": spec.parent_zone, "name": self.delegation_label(spec), "type": "NS",
                        "ttl": self.ttl, "values": ["<name servers of " + spec.dns_zone + ">"]})
        return records

    # --- DnsDriver ------------------------------------------------------------------------

    def ensure_zone(self, spec: TenantSpec, ingress_ip: str) -> dict:
        zone = self._ensure_child_zone(spec)
        name_servers = list(zone.name_servers or [])
        record_ids = []
        for label in A_LABELS:
            record_set = RecordSet(ttl=self.ttl, a_records=[ARecord(ipv4_address=ingress_ip)],
                                   metadata={TENANT_TAG: spec.tenant_id})
            record_ids.append(self._put_record_set(spec.dns_zone, label, "A", record_set).id)
        delegation = RecordSet(ttl=self.ttl, ns_records=[NsRecord(nsdname=ns) for ns in name_servers],
                               metadata={TENANT_TAG: spec.tenant_id})
        delegation_id = self._put_record_set(spec.parent_zone, self.delegation_label(spec), "NS", delegation).id
        logger.info("dns zone %s delegated from %s to %s", spec.dns_zone, spec.parent_zone, ingress_ip)
        return {"zone": spec.dns_zone, "zoneId": zone.id, "nameServers": name_servers,
                "delegationId": delegation_id, "recordIds": record_ids, "ingressIp": ingress_ip,
                "resources": inventory.dns_resources(spec)}

    def zone_state(self, spec: TenantSpec) -> dict:
        """What Azure holds for the tenant: {"zone", "delegation", "a": {label: [ips]}} (the cut-over's check)."""
        zone = self._get_zone(spec.dns_zone, f"reading zone {spec.dns_zone}")
        a_records: dict[str, list[str]] = {}
        if zone is not None:
            try:
                for record_set in self.client.record_sets.list_by_type(self.resource_group, spec.dns_zone, "A"):
                    a_records[record_set.name] = [a.ipv4_address for a in record_set.a_records or []]
            except (HttpResponseError, ServiceRequestError, ServiceResponseError) as exc:
                raise classify_azure_error(exc, f"listing the A records of {spec.dns_zone}") from exc
        return {"zone": zone is not None, "delegation": self._delegation_exists(spec), "a": a_records}

    def leftovers(self, spec: TenantSpec) -> list[dict]:
        """The tenant's zone and its delegation, if Azure still has them (the records go with the zone)."""
        found = []
        if self._get_zone(spec.dns_zone, f"reading zone {spec.dns_zone}") is not None:
            found.append(inventory.resource("DnsZone", spec.dns_zone, spec.parent_zone))
        if self._delegation_exists(spec):
            found.append(inventory.resource("DnsDelegation", f"NS/{self.delegation_label(spec)}", spec.parent_zone))
        return found

    def _delegation_exists(self, spec: TenantSpec) -> bool:
        label = self.delegation_label(spec)
        try:
            self.client.record_sets.get(self.resource_group, spec.parent_zone, label, "NS")
        except ResourceNotFoundError:
            return False  # no such record set, or no parent zone at all
        except (HttpResponseError, ServiceRequestError, ServiceResponseError) as exc:
            raise classify_azure_error(exc, f"reading the delegation {label}.{spec.parent_zone}") from exc
        return True

    def delete_zone(self, spec: TenantSpec) -> None:
        label = self.delegation_label(spec)
        try:
            self.client.record_sets.delete(self.resource_group, spec.parent_zone, label, "NS")
        except ResourceNotFoundError:
            pass
        except HttpResponseError as exc:
            raise classify_azure_error(exc, f"removing the delegation {label}.{spec.parent_zone}") from exc
        except (ServiceRequestError, ServiceResponseError) as exc:
            raise classify_azure_error(exc, "removing the delegation") from exc
        try:
            self.client.zones.begin_delete(self.resource_group, spec.dns_zone).result()
        except ResourceNotFoundError:
            pass
        except (HttpResponseError, ServiceRequestError, ServiceResponseError) as exc:
            raise classify_azure_error(exc, f"deleting zone {spec.dns_zone}") from exc
        logger.info("dns zone %s deleted", spec.dns_zone)

    # --- steps ------------------------------------------------------------------------------

    def _ensure_child_zone(self, spec: TenantSpec):
        what = f"creating zone {spec.dns_zone}"
        zone = self._get_zone(spec.dns_zone, what)
        if zone is None:
            desired = Zone(location="global", zone_type="Public",
                           tags={TENANT_TAG: spec.tenant_id, "matih-tenant": spec.slug})
            try:
                zone = self.client.zones.create_or_update(self.resource_group, spec.dns_zone, desired,
                                                          if_none_match="*")
                logger.info("dns zone %s created", spec.dns_zone)
            except HttpResponseError as exc:
                if exc.status_code not in (409, 412):
                    raise classify_azure_error(exc, what) from exc
                zone = self._get_zone(spec.dns_zone, what)  # created concurrently: take it
                if zone is None:
                    raise classify_azure_error(exc, what) from exc
            except (ServiceRequestError, ServiceResponseError) as exc:
                raise classify_azure_error(exc, what) from exc
        owner = (zone.tags or {}).get(TENANT_TAG)
        if owner and owner != spec.tenant_id:
            raise PermanentInfraError(f"zone {spec.dns_zone} belongs to another tenant ({owner})",
                                      hint="a zone is never shared; remove the stale zone or rename the tenant")
        return zone

    def _get_zone(self, name: str, what: str):
        try:
            return self.client.zones.get(self.resource_group, name)
        except ResourceNotFoundError:
            return None
        except (HttpResponseError, ServiceRequestError, ServiceResponseError) as exc:
            raise classify_azure_error(exc, what) from exc

    def _put_record_set(self, zone: str, label: str, record_type: str, record_set: RecordSet):
        what = f"writing {record_type} {label} in {zone}"
        try:
            return self.client.record_sets.create_or_update(self.resource_group, zone, label, record_type,
                                                            record_set)
        except (HttpResponseError, ServiceRequestError, ServiceResponseError) as exc:
            raise classify_azure_error(exc, what) from exc
