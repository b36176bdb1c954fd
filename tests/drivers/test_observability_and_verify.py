"""Observability pipelines and connectivity checks, through the real Kubernetes driver and real HTTPS."""
from __future__ import annotations

import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from deploy.errors import TransientInfraError
from deploy.interfaces import ClusterRef
from deploy.kubernetes import KubernetesClusterDriver
from deploy.observability import ConfigMapPipelines
from deploy.verify import HttpsVerifier
from tests.drivers.fake_arm import self_signed_certificate

NS = "tenant-acme"


@pytest.fixture
def kube(api, spec):
    driver = KubernetesClusterDriver(ClusterRef("shared-1", api.url), request_timeout=2)
    driver.ensure_namespace(spec)
    yield driver
    driver.close()


# --- observability ------------------------------------------------------------------------

def test_pipelines_are_configmaps_the_collectors_pick_up(kube, api, spec):
    pipelines = ConfigMapPipelines(kube, otlp_endpoint="otel.platform:4317")

    result = pipelines.ensure_pipelines(spec)

    assert result["created"] == ["ConfigMap/tenant-acme/tenant-log-pipeline", "ConfigMap/tenant-acme/tenant-trace-pipeline"]
    logs = api.get("configmaps", NS, "tenant-log-pipeline")
    assert logs["metadata"]["labels"]["matih.ai/pipeline"] == "logs"
    assert "Index              tenant-acme" in logs["data"]["fluent-bit.conf"]
    traces = api.get("configmaps", NS, "tenant-trace-pipeline")
    collector = yaml.safe_load(traces["data"]["otel-collector.yaml"])
    assert collector["exporters"]["otlp"] == {"endpoint": "otel.platform:4317",
                                              "headers": {"x-matih-tenant": spec.tenant_id}}
    assert {"key": "matih.tenant", "value": "acme", "action": "upsert"} in collector["processors"]["resource"]["attributes"]
    assert set(collector["service"]["pipelines"]) == {"traces", "metrics"}
    assert result["resources"] == [
        {"kind": "LogPipeline", "name": "tenant-acme/tenant-log-pipeline", "location": "shared-1"},
        {"kind": "TracePipeline", "name": "tenant-acme/tenant-trace-pipeline", "location": "shared-1"}]


def test_pipelines_are_idempotent_and_compensated(kube, api, spec):
    pipelines = ConfigMapPipelines(kube)
    pipelines.ensure_pipelines(spec)
    assert pipelines.ensure_pipelines(spec)["created"] == []

    pipelines.delete_pipelines(spec)
    pipelines.delete_pipelines(spec)
    assert api.names("configmaps", NS) == []


# --- verify ---------------------------------------------------------------------------------

def deployment(name: str, ready: int, replicas: int = 1) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": NS, "generation": 1},
            "spec": {"replicas": replicas},
            "status": {"observedGeneration": 1, "replicas": replicas, "updatedReplicas": ready, "readyReplicas": ready}}


class TenantEndpoints(ThreadingHTTPServer):
    """The tenant's ingress, as seen from outside: HTTPS with a certificate for its hosts."""

    daemon_threads = True

    def __init__(self, directory, hosts, status=200):
        super().__init__(("127.0.0.1", 0), _Endpoint)
        self.cert_path, key_path = self_signed_certificate(directory, tuple(hosts), stem="tenant")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_path, key_path)
        self.socket = context.wrap_socket(self.socket, server_side=True)
        self.status = status
        self.seen: list[tuple[str, str]] = []
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def handle_error(self, request, client_address):
        pass


class _Endpoint(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        self.server.seen.append((self.headers["Host"], self.path))
        self.send_response(self.server.status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")


@pytest.fixture
def endpoints(tmp_path, spec):
    server = TenantEndpoints(tmp_path, spec.hosts)
    yield server
    server.shutdown()
    server.server_close()


def verifier(kube, endpoints, spec) -> HttpsVerifier:
    port = endpoints.server_address[1]
    return HttpsVerifier(kube, ca_bundle=str(endpoints.cert_path), timeout=2,
                         connect_to={host: ("127.0.0.1", port) for host in spec.hosts})


def test_a_rolled_out_tenant_answering_on_every_host_is_healthy(kube, api, endpoints, spec):
    for name in ("core-api", "core-web", "core-bi"):
        api.put("deployments", NS, deployment(name, 1))

    result = verifier(kube, endpoints, spec).check(spec)

    assert result["healthy"] and result["endpoints"] == {host: 200 for host in spec.hosts}
    assert sorted(endpoints.seen) == sorted((host, "/healthz") for host in spec.hosts)


def test_a_workload_not_rolled_out_is_transient(kube, api, endpoints, spec):
    api.put("deployments", NS, deployment("core-api", 1))
    api.put("deployments", NS, deployment("core-web", 0, replicas=2))
    with pytest.raises(TransientInfraError) as caught:
        verifier(kube, endpoints, spec).check(spec)
    assert "core-web" in caught.value.message and "core-api" not in caught.value.message
    assert endpoints.seen == []


def test_no_workloads_yet_is_transient(kube, endpoints, spec):
    with pytest.raises(TransientInfraError):
        verifier(kube, endpoints, spec).check(spec)


def test_an_endpoint_answering_5xx_is_transient(kube, api, endpoints, spec):
    api.put("deployments", NS, deployment("core-api", 1))
    endpoints.status = 503
    with pytest.raises(TransientInfraError) as caught:
        verifier(kube, endpoints, spec).check(spec)
    assert "503" in caught.value.message


def test_a_certificate_not_valid_for_the_host_is_transient(kube, api, tmp_path, spec):
    api.put("deployments", NS, deployment("core-api", 1))
    wrong = TenantEndpoints(tmp_path, ["someone-else.matih.ai"])
    try:
        port = wrong.server_address[1]
        check = HttpsVerifier(kube, ca_bundle=str(wrong.cert_path), timeout=2,
                              connect_to={host: ("127.0.0.1", port) for host in spec.hosts})
        with pytest.raises(TransientInfraError) as caught:
            check.check(spec)
        assert "certificate" in caught.value.message
    finally:
        wrong.shutdown()
        wrong.server_close()
