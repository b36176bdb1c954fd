"""The real verification: is the tenant actually serving?

1. Every Deployment and StatefulSet of the namespace is rolled out (through the
   Kubernetes driver's rollout_status), and there is at least one.
2. Every tenant host answers `GET https://{host}{path}` over verified TLS (the
   certificate cert-manager issued must be valid for that host) with a status
   below 500.
Anything not there yet is a TransientInfraError naming what is missing: DNS
propagation, certificate issuance and rollouts all finish on their own, and the
orchestrator's retry budget decides when to give up.

`connect_to` maps a host to the address to dial instead of resolving it (like
curl --resolve): the ingress IP, to check the ingress and its certificate
before DNS has propagated, or a local server in tests. SNI and certificate
checks still use the tenant's host name.
"""
from __future__ import annotations

import http.client
import socket
import ssl

from deploy.errors import TransientInfraError
from deploy.interfaces import TenantSpec


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to `address` while presenting and verifying `host` (SNI + certificate)."""

    def __init__(self, host: str, address: tuple[str, int], *, context: ssl.SSLContext, timeout: float):
        # Port 443 for the Host header the ingress routes on; the socket goes to `address`.
        super().__init__(host, 443, context=context, timeout=timeout)
        self._address = address
        self._context = context

    def connect(self) -> None:
        sock = socket.create_connection(self._address, self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


class HttpsVerifier:
    """VerifyDriver: rollouts through the Kubernetes driver, endpoints over HTTPS."""

    def __init__(self, kubernetes, *, path: str = "/healthz", timeout: float = 10, ca_bundle: str = "",
                 connect_to: dict[str, tuple[str, int]] | None = None):
        self.kubernetes = kubernetes
        self.path = path
        self.timeout = timeout
        self.ca_bundle = ca_bundle
        self.connect_to = dict(connect_to or {})

    def _context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_bundle or None)

    def check(self, spec: TenantSpec) -> dict:
        workloads = self.kubernetes.rollout_status(spec)
        if not workloads:
            raise TransientInfraError(f"no workloads in {spec.namespace} yet",
                                      hint="the Helm releases have not created their Deployments yet")
        pending = sorted(name for name, ready in workloads.items() if not ready)
        if pending:
            raise TransientInfraError(f"not rolled out yet in {spec.namespace}: {', '.join(pending)}",
                                      hint="pods are starting or failing; see `kubectl -n "
                                           f"{spec.namespace} get pods`")
        endpoints = {host: self._probe(host) for host in spec.hosts}
        return {"workloads": workloads, "endpoints": endpoints, "healthy": True}

    def _probe(self, host: str) -> int:
        url = f"https://{host}{self.path}"
        address = self.connect_to.get(host, (host, 443))
        connection = _PinnedHTTPSConnection(host, address, context=self._context(), timeout=self.timeout)
        try:
            connection.request("GET", self.path, headers={"User-Agent": "matih-verify/1"})
            status = connection.getresponse().status
        except ssl.SSLCertVerificationError as exc:
            raise TransientInfraError(f"{url}: the TLS certificate is not valid yet", provider_message=str(exc),
                                      hint="cert-manager may still be solving the DNS-01 challenge") from exc
        except (OSError, http.client.HTTPException) as exc:
            raise TransientInfraError(f"{url} does not answer", provider_message=str(exc),
                                      hint="DNS may not have propagated, or the ingress is not ready") from exc
        finally:
            connection.close()
        if status >= 500:
            raise TransientInfraError(f"{url} answered {status}", hint="the tenant's services are not healthy yet")
        return status
