"""The real observability driver: the tenant's log and trace pipeline configuration, as ConfigMaps.

The platform runs the collectors (a Fluent Bit DaemonSet for logs, an
OpenTelemetry Collector for traces and metrics). Each tenant gets, in its own
namespace, the configuration those collectors load for it (they watch
ConfigMaps labelled `matih.ai/pipeline`):

- `tenant-log-pipeline`: a Fluent Bit filter + output that tags the namespace's
  container logs with the tenant and ships them to the platform's log store
  under the tenant's own index;
- `tenant-trace-pipeline`: an OpenTelemetry Collector pipeline that stamps the
  tenant's resource attributes on every span and metric and exports them, with
  the tenant's id as a header, to the platform's collector.

Both are written through the Kubernetes driver (create-or-get, drift patched,
delete as compensation).
"""
from __future__ import annotations

import yaml

from deploy import inventory
from deploy.interfaces import TenantSpec

LOGS = inventory.LOG_PIPELINE
TRACES = inventory.TRACE_PIPELINE


class ConfigMapPipelines:
    """ObservabilityDriver over a KubernetesDriver that offers ensure_config_map/delete_config_map."""

    def __init__(self, kubernetes, *, otlp_endpoint: str = "otel-collector.monitoring.svc:4317",
                 log_host: str = "logs.monitoring.svc", log_port: int = 9200):
        self.kubernetes = kubernetes
        self.otlp_endpoint = otlp_endpoint
        self.log_host = log_host
        self.log_port = log_port

    def log_pipeline(self, spec: TenantSpec) -> str:
        index = f"tenant-{spec.slug}"
        return "\n".join([
            "[FILTER]",
            "    Name    grep",
            f"    Match   kube.var.log.containers.*_{spec.namespace}_*",
            f"    Regex   $kubernetes['namespace_name'] ^{spec.namespace}$",
            "",
            "[FILTER]",
            "    Name    record_modifier",
            f"    Match   kube.var.log.containers.*_{spec.namespace}_*",
            f"    Record  matih.tenant {spec.slug}",
            f"    Record  matih.tenant_id {spec.tenant_id}",
            f"    Record  matih.tier {spec.tier.lower()}",
            "",
            "[OUTPUT]",
            "    Name               opensearch",
            f"    Match              kube.var.log.containers.*_{spec.namespace}_*",
            f"    Host               {self.log_host}",
            f"    Port               {self.log_port}",
            f"    Index              {index}",
            "    Suppress_Type_Name On",
            "    tls                On",
            "",
        ])

    def trace_pipeline(self, spec: TenantSpec) -> str:
        config = {
            "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "0.0.0.0:4317"},
                                                 "http": {"endpoint": "0.0.0.0:4318"}}}},
            "processors": {
                "memory_limiter": {"check_interval": "1s", "limit_percentage": 80, "spike_limit_percentage": 20},
                "resource": {"attributes": [
                    {"key": "matih.tenant", "value": spec.slug, "action": "upsert"},
                    {"key": "matih.tenant_id", "value": spec.tenant_id, "action": "upsert"},
                    {"key": "matih.tier", "value": spec.tier.lower(), "action": "upsert"},
                    {"key": "k8s.namespace.name", "value": spec.namespace, "action": "upsert"},
                ]},
                "batch": {"timeout": "5s", "send_batch_size": 1024},
            },
            "exporters": {"otlp": {"endpoint": self.otlp_endpoint,
                                   "headers": {"x-matih-tenant": spec.tenant_id}}},
            "service": {"pipelines": {
                kind: {"receivers": ["otlp"], "processors": ["memory_limiter", "resource", "batch"],
                       "exporters": ["otlp"]}
                for kind in ("traces", "metrics")
            }},
        }
        return yaml.safe_dump(config, sort_keys=False)

    def ensure_pipelines(self, spec: TenantSpec) -> dict:
        logs = self.kubernetes.ensure_config_map(spec, LOGS, {"fluent-bit.conf": self.log_pipeline(spec)},
                                                 labels={"matih.ai/pipeline": "logs"})
        traces = self.kubernetes.ensure_config_map(spec, TRACES, {"otel-collector.yaml": self.trace_pipeline(spec)},
                                                   labels={"matih.ai/pipeline": "traces"})
        # The inventory names them for what they are to the tenant; the object is the ConfigMap of that name.
        resources = [inventory.resource("LogPipeline", logs["resources"][0]["name"], logs["resources"][0]["location"]),
                     inventory.resource("TracePipeline", traces["resources"][0]["name"],
                                        traces["resources"][0]["location"])]
        return {"logs": logs["objects"][0], "traces": traces["objects"][0],
                "created": logs["created"] + traces["created"], "patched": logs["patched"] + traces["patched"],
                "resources": resources}

    def delete_pipelines(self, spec: TenantSpec) -> None:
        self.kubernetes.delete_config_map(spec, TRACES)
        self.kubernetes.delete_config_map(spec, LOGS)
