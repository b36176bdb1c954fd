"""The tenants' ingress as the internet sees it: DNS from the ARM stub, Ingresses from the fake API servers.

A local HTTPS server that answers `GET https://{host}/...` the way the platform's edge would:

1. Resolve the host in the ARM stub's zones like a resolver: the longest zone that holds
   it (a child zone counts only when its parent delegates to it with an NS record set),
   then its A record set, else the zone's wildcard `*`. No address: 502.
2. The address picks the cluster (`clusters`: ingress IP -> fake API server), as an
   ingress controller's load balancer would.
3. In that cluster, the Ingress with a rule for the host, whose class is served there
   (the platform's shared class, or an IngressClass object of that name); none: 404.
4. The rule's backend Service must select a Deployment or StatefulSet with ready
   replicas: 200. A Service with no endpoints (no selector, or nothing ready; a
   suspended tenant's `tenant-suspended`) is 503, as NGINX answers.

TLS is cert-manager's part: a certificate for the host, signed by this server's CA, is
issued only when the routed cluster has an Ingress listing the host under `tls.hosts`.
The CA certificate (`ca_path`) is what the verifier trusts (MATIH_VERIFY_CA_BUNDLE).
"""
from __future__ import annotations

import datetime
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.drivers.fake_arm import FakeArmDns
from tests.drivers.fake_kube import FakeKubeApi, matches_selector


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class _Authority:
    """A private CA that issues one leaf certificate per host name, as cert-manager's issuer would."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "matih test edge CA")])
        now = datetime.datetime.now(datetime.timezone.utc)
        self.name = name
        self.cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(minutes=5))
                     .not_valid_after(now + datetime.timedelta(days=1))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                     .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                                  content_commitment=False, key_encipherment=False,
                                                  data_encipherment=False, key_agreement=False,
                                                  encipher_only=False, decipher_only=False), critical=True)
                     .sign(self.key, hashes.SHA256()))
        self.ca_path = directory / "edge-ca.crt"
        self.ca_path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def context_for(self, host: str) -> ssl.SSLContext:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        leaf = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
                .issuer_name(self.name).public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .sign(self.key, hashes.SHA256()))
        cert_path, key_path = self.directory / f"{host}.crt", self.directory / f"{host}.key"
        cert_path.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(_pem_key(key))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_path, key_path)
        return context


class FakeIngressEdge(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, directory: Path, *, arm: FakeArmDns, clusters: dict[str, FakeKubeApi],
                 shared_ingress_class: str = "nginx"):
        super().__init__(("127.0.0.1", 0), _Handler)
        directory.mkdir(parents=True, exist_ok=True)
        self.arm = arm
        self.clusters = clusters  # ingress IP -> the cluster behind it
        self.shared_ingress_class = shared_ingress_class
        self.authority = _Authority(directory)
        self.seen: list[tuple[str, int]] = []  # (host, status answered)
        self._contexts: dict[str, ssl.SSLContext] = {}
        # Without a certificate for the host the handshake ends; the default one names no tenant.
        default = self.authority.context_for("edge.invalid")
        default.sni_callback = self._sni
        self.socket = default.wrap_socket(self.socket, server_side=True)
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def ca_path(self) -> Path:
        return self.authority.ca_path

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.server_address[1])

    def start(self) -> "FakeIngressEdge":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def handle_error(self, request, client_address) -> None:
        pass  # a handshake refused for want of a certificate is the answer, not a server error

    # --- resolution and routing ---------------------------------------------------------------

    def resolve(self, host: str) -> str | None:
        """The host's IPv4 address from the ARM stub's zones, as a resolver would find it."""
        with self.arm.lock:
            zones = set(self.arm.zones)
            records = {key: rs["properties"] for key, rs in self.arm.record_sets.items()}
        candidates = sorted((z for z in zones if host == z or host.endswith("." + z)), key=len, reverse=True)
        for zone in candidates:
            parent = next((p for p in candidates if zone.endswith("." + p)), None)
            if parent is not None and (parent, "NS", zone[: -len(parent) - 1]) not in records:
                continue  # not delegated: the parent answers
            label = "@" if host == zone else host[: -len(zone) - 1]
            found = records.get((zone, "A", label)) or records.get((zone, "A", "*"))
            if not found:
                return None
            return found["ARecords"][0]["ipv4Address"]
        return None

    def route(self, host: str) -> tuple[FakeKubeApi | None, dict | None]:
        """(cluster, Ingress) serving the host, or (cluster or None, None)."""
        cluster = self.clusters.get(self.resolve(host) or "")
        if cluster is None:
            return None, None
        with cluster.lock:
            ingresses = [o for (p, _, _), o in cluster.objects.items() if p == "ingresses"]
            classes = {n for (p, _, n) in cluster.objects if p == "ingressclasses"}
        for ingress in ingresses:
            served = ingress["spec"].get("ingressClassName") in classes | {self.shared_ingress_class}
            if served and any(rule.get("host") == host for rule in ingress["spec"].get("rules") or []):
                return cluster, ingress
        return cluster, None

    def _sni(self, sock: ssl.SSLSocket, server_name: str | None, _context) -> None:
        _, ingress = self.route(server_name or "")
        if ingress is None or not any(server_name in (tls.get("hosts") or [])
                                      for tls in ingress["spec"].get("tls") or []):
            return  # no certificate issued for it: the default one names no tenant
        if server_name not in self._contexts:
            self._contexts[server_name] = self.authority.context_for(server_name)
        sock.context = self._contexts[server_name]

    def answer(self, host: str) -> int:
        cluster, ingress = self.route(host)
        if cluster is None:
            return 502
        if ingress is None:
            return 404
        namespace = ingress["metadata"]["namespace"]
        rule = next(r for r in ingress["spec"]["rules"] if r.get("host") == host)
        service_name = rule["http"]["paths"][0]["backend"]["service"]["name"]
        service = cluster.get("services", namespace, service_name)
        selector = (service or {}).get("spec", {}).get("selector") or {}
        if not selector:
            return 503  # no Service, or one without endpoints
        terms = ",".join(f"{key}={value}" for key, value in selector.items())
        with cluster.lock:
            workloads = [o for (p, ns, _), o in cluster.objects.items()
                         if p in ("deployments", "statefulsets") and ns == namespace]
        for workload in workloads:
            template = {"metadata": {"labels": workload["spec"]["template"]["metadata"].get("labels") or {}}}
            if matches_selector(template, terms) and (workload.get("status") or {}).get("readyReplicas", 0) > 0:
                return 200
        return 503


class _Handler(BaseHTTPRequestHandler):
    server: FakeIngressEdge
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_GET(self):
        host = (self.headers.get("Host") or "").split(":")[0]
        code = self.server.answer(host)
        self.server.seen.append((host, code))
        body = b"ok" if code == 200 else f"{code}".encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
