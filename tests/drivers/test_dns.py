"""The Azure DNS driver: the real SDK, through its real transport and TLS, against a local ARM stub."""
from __future__ import annotations

import socket
import time

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError

from deploy.dns import AzureDnsDriver
from deploy.errors import PermanentInfraError, TransientInfraError
from tests.drivers.conftest import make_spec
from tests.drivers.fake_arm import API_VERSION, Fault, FakeArmDns

SUB, RG = "11111111-2222-3333-4444-555555555555", "rg-matih-dns"
ZONES = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network/dnsZones"
IP = "20.51.7.10"


class StaticToken:
    """azure-identity has no static-token credential; this is the protocol the SDK calls."""

    def __init__(self, token: str = "test-arm-token"):
        self.token = token

    def get_token(self, *scopes, **kwargs) -> AccessToken:
        return AccessToken(self.token, int(time.time()) + 3600)


class RefusedCredential:
    def get_token(self, *scopes, **kwargs):
        raise ClientAuthenticationError("AADSTS7000215: Invalid client secret provided.")


@pytest.fixture
def arm(tmp_path):
    server = FakeArmDns(tmp_path).start()
    server.add_zone(SUB, RG, "matih.ai")
    yield server
    server.stop()


def make_driver(arm, credential=None) -> AzureDnsDriver:
    return AzureDnsDriver(subscription_id=SUB, resource_group=RG, credential=credential or StaticToken(),
                          base_url=arm.url, connection_verify=str(arm.cert_path), polling_interval=0)


@pytest.fixture
def dns(arm):
    return make_driver(arm)


def test_ensure_zone_sends_the_documented_arm_requests(dns, arm, spec):
    result = dns.ensure_zone(spec, IP)

    assert arm.writes() == [
        ("PUT", f"{ZONES}/acme.matih.ai"),
        ("PUT", f"{ZONES}/acme.matih.ai/A/@"),
        ("PUT", f"{ZONES}/acme.matih.ai/A/*"),
        ("PUT", f"{ZONES}/acme.matih.ai/A/api"),
        ("PUT", f"{ZONES}/acme.matih.ai/A/bi"),
        ("PUT", f"{ZONES}/matih.ai/NS/acme"),
    ]
    writes = [r for r in arm.requests if r.method == "PUT"]
    assert all(r.query == f"api-version={API_VERSION}" for r in writes)
    assert all(r.headers["Authorization"] == "Bearer test-arm-token" for r in arm.requests)
    zone_put = writes[0]
    assert zone_put.headers.get("If-None-Match") == "*"
    assert zone_put.body["location"] == "global" and zone_put.body["properties"]["zoneType"] == "Public"
    assert writes[1].body["properties"]["ARecords"] == [{"ipv4Address": IP}]
    assert writes[1].body["properties"]["TTL"] == 300
    # The delegation names the child zone's own Azure name servers.
    name_servers = arm.zones["acme.matih.ai"]["properties"]["nameServers"]
    assert writes[-1].body["properties"]["NSRecords"] == [{"nsdname": ns} for ns in name_servers]
    assert result["nameServers"] == name_servers
    assert result["zone"] == "acme.matih.ai" and len(result["recordIds"]) == 4


def test_tenant_zone_holds_the_four_a_records(dns, arm, spec):
    dns.ensure_zone(spec, IP)
    records = arm.records("acme.matih.ai")
    assert {name for (rtype, name) in records if rtype == "A"} == {"@", "*", "api", "bi"}
    assert all(props["ARecords"] == [{"ipv4Address": IP}] for (rtype, _), props in records.items() if rtype == "A")
    assert [r["name"] for r in dns.records(spec, IP) if r["type"] == "A"] == ["@", "*", "api", "bi"]


def test_redelivered_ensure_zone_creates_nothing_twice(dns, arm, spec):
    first = dns.ensure_zone(spec, IP)
    zone_etag = arm.zones["acme.matih.ai"]["etag"]
    arm.requests.clear()

    second = dns.ensure_zone(spec, IP)

    assert second == first
    assert ("PUT", f"{ZONES}/acme.matih.ai") not in arm.writes()  # the zone was read, not written
    assert arm.zones["acme.matih.ai"]["etag"] == zone_etag
    assert len(arm.records("acme.matih.ai")) == 2 + 4  # SOA, NS and four A record sets, once each


def test_drifted_record_is_rewritten(dns, arm, spec):
    dns.ensure_zone(spec, IP)
    arm.put_record_set(SUB, RG, "acme.matih.ai", "A", "api", {"TTL": 60, "ARecords": [{"ipv4Address": "1.2.3.4"}]})

    dns.ensure_zone(spec, IP)

    assert arm.records("acme.matih.ai")[("A", "api")]["ARecords"] == [{"ipv4Address": IP}]


def test_zone_created_concurrently_is_taken_over(dns, arm, spec):
    arm.add_zone(SUB, RG, "acme.matih.ai", tags={"matih-tenant-id": spec.tenant_id})
    arm.inject(Fault("GET", "/dnsZones/acme.matih.ai", 404, "ResourceNotFound", "not found (yet)"))

    result = dns.ensure_zone(spec, IP)

    zone_puts = [r for r in arm.requests if r.method == "PUT" and r.path.endswith("/acme.matih.ai")]
    assert [r.code for r in zone_puts] == [412]  # If-None-Match: * lost the race
    assert result["nameServers"] == arm.zones["acme.matih.ai"]["properties"]["nameServers"]


def test_zone_of_another_tenant_is_permanent(dns, arm, spec):
    arm.add_zone(SUB, RG, "acme.matih.ai", tags={"matih-tenant-id": "someone-else"})
    with pytest.raises(PermanentInfraError) as caught:
        dns.ensure_zone(spec, IP)
    assert "another tenant" in caught.value.message
    assert ("PUT", f"{ZONES}/matih.ai/NS/acme") not in arm.writes()


def test_delete_removes_the_delegation_first_then_the_zone(dns, arm, spec):
    dns.ensure_zone(spec, IP)
    arm.requests.clear()

    dns.delete_zone(spec)

    assert arm.writes() == [("DELETE", f"{ZONES}/matih.ai/NS/acme"), ("DELETE", f"{ZONES}/acme.matih.ai")]
    assert [r.path for r in arm.requests if r.path.startswith("/operationResults/")]  # the LRO was polled
    assert "acme.matih.ai" not in arm.zones
    assert ("NS", "acme") not in arm.records("matih.ai")
    assert arm.records("acme.matih.ai") == {}


def test_deleting_what_is_already_gone_succeeds(dns, arm, spec):
    dns.delete_zone(spec)  # nothing was ever created: ARM answers 204
    arm.inject(Fault("DELETE", "/NS/acme", 404, "NotFound", "gone"))
    arm.inject(Fault("DELETE", "/dnsZones/acme.matih.ai", 404, "ResourceNotFound", "gone"))
    dns.delete_zone(spec)


def test_throttling_is_transient_with_retry_after(dns, arm, spec):
    arm.inject(Fault("PUT", "/A/api", 429, "TooManyRequests", "The request is being throttled.",
                     headers={"Retry-After": "17"}))
    with pytest.raises(TransientInfraError) as caught:
        dns.ensure_zone(spec, IP)
    assert caught.value.retry_after == 17.0
    assert "throttled" in caught.value.provider_message
    dns.ensure_zone(spec, IP)  # the retry completes the zone


@pytest.mark.parametrize("code,error_code", [(409, "Conflict"), (503, "ServiceUnavailable")])
def test_conflict_and_server_errors_are_transient(dns, arm, spec, code, error_code):
    arm.inject(Fault("PUT", "/NS/acme", code, error_code, "busy"))
    with pytest.raises(TransientInfraError):
        dns.ensure_zone(spec, IP)


@pytest.mark.parametrize("code,error_code", [(401, "InvalidAuthenticationToken"), (403, "AuthorizationFailed")])
def test_unauthorized_is_permanent(dns, arm, spec, code, error_code):
    arm.inject(Fault("GET", "/dnsZones/acme.matih.ai", code, error_code,
                     "The client does not have authorization to perform action"))
    with pytest.raises(PermanentInfraError) as caught:
        dns.ensure_zone(spec, IP)
    assert "authorization" in caught.value.provider_message
    assert "DNS Zone Contributor" in caught.value.hint


def test_missing_parent_zone_is_permanent(dns, spec):
    orphan = make_spec(parent="unknown-parent.example")
    with pytest.raises(PermanentInfraError) as caught:
        dns.ensure_zone(orphan, IP)
    assert "parent zone" in caught.value.hint


def test_refused_credential_is_permanent(arm, spec):
    dns = make_driver(arm, credential=RefusedCredential())
    with pytest.raises(PermanentInfraError) as caught:
        dns.ensure_zone(spec, IP)
    assert "AADSTS7000215" in caught.value.provider_message
    assert arm.requests == []  # no request left without a token


def test_unreachable_arm_endpoint_is_transient(spec, tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dns = AzureDnsDriver(subscription_id=SUB, resource_group=RG, credential=StaticToken(),
                         base_url=f"https://127.0.0.1:{port}")
    with pytest.raises(TransientInfraError):
        dns.ensure_zone(spec, IP)


# --- the tenant's life after provisioning -------------------------------------------------------

NEW_IP = "20.62.1.99"


def test_ensure_zone_reports_the_zone_its_records_and_the_delegation(dns, spec):
    assert dns.ensure_zone(spec, IP)["resources"] == [
        {"kind": "DnsZone", "name": "acme.matih.ai", "location": "matih.ai"},
        {"kind": "DnsRecord", "name": "A/@", "location": "acme.matih.ai"},
        {"kind": "DnsRecord", "name": "A/*", "location": "acme.matih.ai"},
        {"kind": "DnsRecord", "name": "A/api", "location": "acme.matih.ai"},
        {"kind": "DnsRecord", "name": "A/bi", "location": "acme.matih.ai"},
        {"kind": "DnsDelegation", "name": "NS/acme", "location": "matih.ai"},
    ]


def test_a_new_ingress_ip_repoints_every_a_record_and_keeps_the_zone(dns, arm, spec):
    dns.ensure_zone(spec, IP)
    zone_etag = arm.zones["acme.matih.ai"]["etag"]
    delegation = arm.records("matih.ai")[("NS", "acme")]["NSRecords"]

    result = dns.ensure_zone(spec, NEW_IP)  # the ENTERPRISE cut-over

    assert result["ingressIp"] == NEW_IP
    assert arm.zones["acme.matih.ai"]["etag"] == zone_etag  # the zone was not recreated
    assert arm.records("matih.ai")[("NS", "acme")]["NSRecords"] == delegation
    assert dns.zone_state(spec) == {"zone": True, "delegation": True,
                                    "a": {label: [NEW_IP] for label in ("@", "*", "api", "bi")}}


def test_zone_state_reads_what_azure_holds(dns, arm, spec):
    assert dns.zone_state(spec) == {"zone": False, "delegation": False, "a": {}}
    dns.ensure_zone(spec, IP)
    arm.put_record_set(SUB, RG, "acme.matih.ai", "A", "legacy", {"TTL": 60, "ARecords": [{"ipv4Address": "1.2.3.4"}]})

    state = dns.zone_state(spec)

    assert state["a"]["legacy"] == ["1.2.3.4"]  # a record set made by hand shows too
    assert state["a"]["api"] == [IP]


def test_deleting_the_zone_leaves_no_record_delegation_or_zone(dns, arm, spec):
    dns.ensure_zone(spec, IP)

    dns.delete_zone(spec)

    assert dns.zone_state(spec) == {"zone": False, "delegation": False, "a": {}}
    assert dns.leftovers(spec) == []
    assert [key for key in arm.record_sets if key[0] == "acme.matih.ai" or key == ("matih.ai", "NS", "acme")] == []


def test_the_leftover_scan_finds_a_planted_zone_and_delegation(dns, arm, spec):
    # Nothing was ever recorded: someone made the zone and the delegation by hand.
    arm.add_zone(SUB, RG, "acme.matih.ai")
    arm.put_record_set(SUB, RG, "matih.ai", "NS", "acme", {"TTL": 300, "NSRecords": [{"nsdname": "ns1.example."}]})

    assert dns.leftovers(spec) == [{"kind": "DnsZone", "name": "acme.matih.ai", "location": "matih.ai"},
                                   {"kind": "DnsDelegation", "name": "NS/acme", "location": "matih.ai"}]

    dns.delete_zone(spec)
    assert dns.leftovers(spec) == []


def test_a_delegation_left_without_its_zone_is_a_leftover(dns, arm, spec):
    dns.ensure_zone(spec, IP)
    arm.zones.pop("acme.matih.ai")  # the zone went, the parent still points at it
    assert dns.leftovers(spec) == [{"kind": "DnsDelegation", "name": "NS/acme", "location": "matih.ai"}]
