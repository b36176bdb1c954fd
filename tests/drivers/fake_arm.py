"""A local HTTPS stub of the Azure Resource Manager DNS API (Microsoft.Network/dnsZones, 2018-05-01).

The driver's real SDK (azure-mgmt-dns over azure-core's requests transport)
talks TLS to it: the certificate is self-signed for 127.0.0.1, made here with
`cryptography`, and handed to the client as its CA bundle (connection_verify).

It answers like ARM: 201 on create and 200 on update, 404 ResourceNotFound /
ParentResourceNotFound, 412 PreconditionFailed for If-None-Match: * on an
existing resource, 401 without a bearer token, 400 for a body that is not a
valid zone or record set, and a zone DELETE as a long-running operation (202 +
Azure-AsyncOperation). Creating a zone creates its SOA and NS record sets, with
Azure-style name servers. `GET /subscriptions/{id}` (api-version 2022-12-01) answers
like ARM too, from `subscriptions` (id -> state): the credentials driver reads the
tenant's subscription from the same ARM endpoint.
"""
from __future__ import annotations

import copy
import datetime
import ipaddress
import itertools
import json
import re
import ssl
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

API_VERSION = "2018-05-01"
RECORD_KEYS = {"A": ("ARecords", {"ipv4Address"}), "NS": ("NSRecords", {"nsdname"}),
               "TXT": ("TXTRecords", {"value"}), "SOA": ("SOARecord", None)}
ZONE_PATH = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.Network/dnsZones/"
    r"(?P<zone>[^/?]+)(?:/(?P<type>A|NS|TXT|SOA|CNAME|AAAA)(?:/(?P<name>[^/?]+))?)?$", re.IGNORECASE)
SUBSCRIPTION_PATH = re.compile(r"^/subscriptions/(?P<sub>[^/?]+)$")
SUBSCRIPTION_API_VERSION = "2022-12-01"
OPERATION_PATH = re.compile(r"^/operationResults/(?P<op>[^/?]+)$")


def self_signed_certificate(directory: Path, names: tuple[str, ...] = ("127.0.0.1",),
                            stem: str = "arm-stub") -> tuple[Path, Path]:
    """A self-signed certificate for `names` (IP addresses or DNS names) and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    # A distinct subject per stub: OpenSSL finds a trusted certificate by subject,
    # so two stubs in one CA bundle must not share one.
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{stem} {names[0]}")])
    alternatives = []
    for name in names:
        try:
            alternatives.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alternatives.append(x509.DNSName(name))
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@dataclass
class Fault:
    method: str
    path_contains: str
    code: int
    error_code: str = "InternalServerError"
    message: str = "injected failure"
    headers: dict = field(default_factory=dict)
    times: int = 1


@dataclass
class Request:
    method: str
    path: str
    query: str
    headers: dict
    body: dict | None
    code: int = 0


class FakeArmDns(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, directory: Path):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.cert_path, key_path = self_signed_certificate(directory)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_path, key_path)
        self.socket = context.wrap_socket(self.socket, server_side=True)
        self.zones: dict[str, dict] = {}  # zone name -> zone
        self.record_sets: dict[tuple[str, str, str], dict] = {}  # (zone, TYPE, name) -> record set
        self.subscriptions: dict[str, str] = {}  # subscription id -> state ("Enabled", "Disabled")
        self.requests: list[Request] = []
        self.faults: list[Fault] = []
        self.lock = threading.Lock()
        self._etags = itertools.count(1)
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server_address[1]}"

    def start(self) -> "FakeArmDns":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def handle_error(self, request, client_address) -> None:
        pass

    def inject(self, fault: Fault) -> None:
        with self.lock:
            self.faults.append(fault)

    def take_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.method == method and fault.path_contains in path:
                    fault.times -= 1
                    if fault.times <= 0:
                        self.faults.remove(fault)
                    return fault
        return None

    def writes(self) -> list[tuple[str, str]]:
        """(method, path) of every PUT and DELETE, in order."""
        return [(r.method, r.path) for r in self.requests if r.method in ("PUT", "DELETE")]

    # --- resources ----------------------------------------------------------------

    def zone_id(self, sub: str, rg: str, zone: str) -> str:
        return f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Network/dnszones/{zone}"

    def add_zone(self, sub: str, rg: str, zone: str, tags: dict | None = None) -> dict:
        servers = [f"ns{i}-0{len(self.zones) % 9 + 1}.azure-dns.{tld}." for i, tld in
                   ((1, "com"), (2, "net"), (3, "org"), (4, "info"))]
        body = {"id": self.zone_id(sub, rg, zone), "name": zone, "type": "Microsoft.Network/dnszones",
                "etag": f"00000000-0000-0000-0000-{next(self._etags):012d}", "location": "global", "tags": tags or {},
                "properties": {"maxNumberOfRecordSets": 10000, "numberOfRecordSets": 2, "nameServers": servers,
                               "zoneType": "Public"}}
        self.zones[zone] = body
        self.put_record_set(sub, rg, zone, "NS", "@", {"TTL": 172800,
                                                       "NSRecords": [{"nsdname": s} for s in servers]})
        self.put_record_set(sub, rg, zone, "SOA", "@", {"TTL": 3600, "SOARecord": {
            "host": servers[0], "email": "azuredns-hostmaster.microsoft.com", "serialNumber": 1}})
        return body

    def put_record_set(self, sub: str, rg: str, zone: str, rtype: str, name: str, properties: dict) -> dict:
        fqdn = f"{zone}." if name == "@" else f"{name}.{zone}."
        body = {"id": f"{self.zone_id(sub, rg, zone)}/{rtype}/{name}", "name": name,
                "type": f"Microsoft.Network/dnszones/{rtype}",
                "etag": str(uuid.uuid4()),
                "properties": {**properties, "fqdn": fqdn, "provisioningState": "Succeeded"}}
        self.record_sets[(zone, rtype, name)] = body
        return body

    def remove_zone(self, zone: str) -> None:
        """Delete a zone with its record sets directly (an operator in the portal)."""
        with self.lock:
            del self.zones[zone]
            for key in [k for k in self.record_sets if k[0] == zone]:
                del self.record_sets[key]

    def remove_record_set(self, zone: str, rtype: str, name: str) -> None:
        with self.lock:
            del self.record_sets[(zone, rtype, name)]

    def records(self, zone: str) -> dict[tuple[str, str], dict]:
        with self.lock:
            return {(t, n): copy.deepcopy(rs["properties"]) for (z, t, n), rs in self.record_sets.items() if z == zone}


def _error(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


class _Handler(BaseHTTPRequestHandler):
    server: FakeArmDns
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def _send(self, code: int, body: dict | None, headers: dict | None = None) -> None:
        payload = json.dumps(body).encode() if body is not None else b""
        if getattr(self, "current", None) is not None:
            self.current.code = code
        self.send_response(code)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("x-ms-request-id", str(uuid.uuid4()))
        for key, value in (headers or {}).items():
            self.send_header(key, str(value))
        self.end_headers()
        self.wfile.write(payload)

    def _handle(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        path, _, query = self.path.partition("?")
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        server = self.server
        self.current = Request(method, path, query, dict(self.headers.items()), body)
        server.requests.append(self.current)

        if not self.headers.get("Authorization", "").startswith("Bearer "):
            return self._send(401, _error("AuthenticationFailed", "Authentication failed. The 'Authorization' "
                                                                  "header is missing."))
        fault = server.take_fault(method, path)
        if fault is not None:
            return self._send(fault.code, _error(fault.error_code, fault.message), fault.headers)
        operation = OPERATION_PATH.match(path)
        if operation and method == "GET":
            return self._send(200, {"status": "Succeeded"})
        subscription = SUBSCRIPTION_PATH.match(path)
        if subscription and method == "GET":
            if f"api-version={SUBSCRIPTION_API_VERSION}" not in query:
                return self._send(400, _error("InvalidApiVersionParameter",
                                              f"api-version must be {SUBSCRIPTION_API_VERSION}"))
            state = server.subscriptions.get(subscription["sub"])
            if state is None:
                return self._send(404, _error("SubscriptionNotFound",
                                              f"The subscription '{subscription['sub']}' could not be found."))
            return self._send(200, {"id": path, "subscriptionId": subscription["sub"], "displayName": "tenant",
                                    "state": state})
        match = ZONE_PATH.match(path)
        if not match:
            return self._send(404, _error("InvalidResourceType", f"no route for {path}"))
        if f"api-version={API_VERSION}" not in query:
            return self._send(400, _error("InvalidApiVersionParameter", f"api-version must be {API_VERSION}"))
        sub, rg, zone, rtype, name = match["sub"], match["rg"], match["zone"], match["type"], match["name"]
        with server.lock:
            if rtype:
                return self._record_set(method, sub, rg, zone, rtype.upper(), name, body)
            return self._zone(method, sub, rg, zone, body)

    def _zone(self, method: str, sub: str, rg: str, zone: str, body) -> None:
        server = self.server
        live = server.zones.get(zone)
        if method == "GET":
            if live is None:
                return self._send(404, _error("ResourceNotFound", f"The Resource 'Microsoft.Network/dnszones/{zone}' "
                                                                  f"under resource group '{rg}' was not found."))
            return self._send(200, live)
        if method == "PUT":
            if not isinstance(body, dict) or body.get("location") != "global":
                return self._send(400, _error("BadRequest", "A DNS zone must have location 'global'."))
            if live is not None and self.headers.get("If-None-Match") == "*":
                return self._send(412, _error("PreconditionFailed", f"The zone {zone} already exists."))
            if live is None:
                return self._send(201, server.add_zone(sub, rg, zone, body.get("tags")))
            live["tags"] = body.get("tags") or {}
            return self._send(200, live)
        if method == "DELETE":
            if live is None:
                return self._send(204, None)  # ARM: deleting an absent zone succeeds
            del server.zones[zone]
            for key in [k for k in server.record_sets if k[0] == zone]:
                del server.record_sets[key]
            operation = uuid.uuid4().hex
            return self._send(202, None, {
                "Azure-AsyncOperation": f"{server.url}/operationResults/{operation}?api-version={API_VERSION}",
                "Retry-After": "0"})
        return self._send(405, _error("MethodNotAllowed", method))

    def _record_set(self, method: str, sub: str, rg: str, zone: str, rtype: str, name: str, body) -> None:
        server = self.server
        if zone not in server.zones:
            return self._send(404, _error("ParentResourceNotFound",
                                          f"Can not perform requested operation on nested resource. Parent resource "
                                          f"'{zone}' not found."))
        if name is None:
            if method != "GET":
                return self._send(405, _error("MethodNotAllowed", method))
            # The list of a zone's record sets of one type (one page: no nextLink).
            listed = [copy.deepcopy(rs) for (z, t, _), rs in sorted(server.record_sets.items())
                      if z == zone and t == rtype]
            return self._send(200, {"value": listed})
        key = (zone, rtype, name)
        live = server.record_sets.get(key)
        if method == "GET":
            if live is None:
                return self._send(404, _error("NotFound", f"The resource record '{name}' does not exist in "
                                                          f"resource group '{rg}' of subscription '{sub}'."))
            return self._send(200, live)
        if method == "PUT":
            properties = (body or {}).get("properties")
            problem = self._invalid_record_set(rtype, properties)
            if problem:
                return self._send(400, _error("BadRequest", problem))
            if live is not None and self.headers.get("If-None-Match") == "*":
                return self._send(412, _error("PreconditionFailed", f"The record set {name} already exists."))
            created = live is None
            stored = server.put_record_set(sub, rg, zone, rtype, name, {
                k: v for k, v in properties.items() if k not in ("fqdn", "provisioningState")})
            return self._send(201 if created else 200, stored)
        if method == "DELETE":
            if live is None:
                return self._send(204, None)
            del server.record_sets[key]
            return self._send(200, None)
        return self._send(405, _error("MethodNotAllowed", method))

    @staticmethod
    def _invalid_record_set(rtype: str, properties) -> str | None:
        if not isinstance(properties, dict):
            return "The record set has no properties."
        if not isinstance(properties.get("TTL"), int):
            return "The TTL of a record set is required."
        field_name, record_keys = RECORD_KEYS.get(rtype, (None, None))
        records = properties.get(field_name) if field_name else None
        if not records:
            return f"A record set of type {rtype} needs {field_name}."
        for record in records:
            if record_keys is not None and set(record) != record_keys:
                return f"Invalid {rtype} record {record}."
            if rtype == "A":
                try:
                    ipaddress.IPv4Address(record["ipv4Address"])
                except ValueError:
                    return f"'{record['ipv4Address']}' is not a valid IPv4 address."
        unknown = set(properties) - {"TTL", "metadata", field_name}
        if unknown:
            return f"Unknown properties {sorted(unknown)}."
        return None

    def do_GET(self):
        self._handle("GET")

    def do_PUT(self):
        self._handle("PUT")

    def do_DELETE(self):
        self._handle("DELETE")
