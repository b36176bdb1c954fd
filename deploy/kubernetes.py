"""The real Kubernetes driver: the official `kubernetes` client, one ApiClient per cluster.

Every object is applied the same way (`_apply`):
1. POST it; 201 means created.
2. On 409 AlreadyExists, GET the live object and compare: when every field we
   manage (the desired manifest) already has the desired value, nothing is sent.
3. Otherwise PATCH it with the desired manifest as a JSON merge patch (drift).
Deletion treats 404 as success, so a compensation can run any number of times.

After provisioning: suspension scales every workload to zero (the replicas kept
in an annotation on each), sets the quota's pods to 0 and points the Ingress at a
Service without endpoints (503, the rules kept in an annotation); activation
undoes each from what the objects themselves recorded, so a redelivered or
resumed step needs no memory of its own. `leftovers` asks the API server, by
name and by label, what of the tenant is still there.

API errors are classified once, in `_classify`: 422/400/403/401/404 are
permanent (the Status message says why), 429/5xx/timeouts/connection errors are
transient (Retry-After honoured); a 409 outside create-or-get is a conflict and
transient too.
"""
from __future__ import annotations

import base64
import copy
import json
import logging
import threading
from dataclasses import dataclass

import urllib3
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from kubernetes.config import kube_config

from deploy import inventory
from deploy.errors import InfraError, PermanentInfraError, TransientInfraError
from deploy.interfaces import ClusterRef, TenantSpec
from deploy.inventory import (
    ADMIN,
    BACKENDS_BEFORE_SUSPEND,
    INGRESS,
    LIMITS,
    MANAGED_BY,
    QUOTA,
    REPLICAS_BEFORE_SUSPEND,
    SUSPENDED_SERVICE,
    TENANT_LABEL,
)

logger = logging.getLogger(__name__)

# Services the core-services chart creates; the tenant Ingress routes to them.
HOST_BACKENDS = {"": "core-web", "api.": "core-api", "bi.": "core-bi"}
SERVICE_PORT = 80

PERMANENT_STATUSES = {400, 401, 403, 404, 405, 410, 413, 415, 422}


@dataclass(frozen=True)
class Kind:
    """How the typed client spells one kind: its API class and method suffix."""

    api_version: str
    api: type
    snake: str
    namespaced: bool = True


KINDS: dict[str, Kind] = {
    "Namespace": Kind("v1", k8s.CoreV1Api, "namespace", namespaced=False),
    "ServiceAccount": Kind("v1", k8s.CoreV1Api, "service_account"),
    "Secret": Kind("v1", k8s.CoreV1Api, "secret"),
    "ConfigMap": Kind("v1", k8s.CoreV1Api, "config_map"),
    "ResourceQuota": Kind("v1", k8s.CoreV1Api, "resource_quota"),
    "LimitRange": Kind("v1", k8s.CoreV1Api, "limit_range"),
    "Role": Kind("rbac.authorization.k8s.io/v1", k8s.RbacAuthorizationV1Api, "role"),
    "RoleBinding": Kind("rbac.authorization.k8s.io/v1", k8s.RbacAuthorizationV1Api, "role_binding"),
    "NetworkPolicy": Kind("networking.k8s.io/v1", k8s.NetworkingV1Api, "network_policy"),
    "Ingress": Kind("networking.k8s.io/v1", k8s.NetworkingV1Api, "ingress"),
    "Service": Kind("v1", k8s.CoreV1Api, "service"),
    "Deployment": Kind("apps/v1", k8s.AppsV1Api, "deployment"),
    "StatefulSet": Kind("apps/v1", k8s.AppsV1Api, "stateful_set"),
    # Cluster-scoped objects the tenant charts make (the ingress controller's); they outlive the namespace.
    "IngressClass": Kind("networking.k8s.io/v1", k8s.NetworkingV1Api, "ingress_class", namespaced=False),
    "ClusterRole": Kind("rbac.authorization.k8s.io/v1", k8s.RbacAuthorizationV1Api, "cluster_role", namespaced=False),
    "ClusterRoleBinding": Kind("rbac.authorization.k8s.io/v1", k8s.RbacAuthorizationV1Api, "cluster_role_binding",
                               namespaced=False),
}
WORKLOAD_KINDS = ("Deployment", "StatefulSet")
CLUSTER_SCOPED_TENANT_KINDS = ("IngressClass", "ClusterRole", "ClusterRoleBinding")


def object_id(manifest: dict) -> str:
    """`Kind/namespace/name` (or `Kind/name`): the external id a step records for rollback."""
    meta = manifest["metadata"]
    if meta.get("namespace"):
        return f"{manifest['kind']}/{meta['namespace']}/{meta['name']}"
    return f"{manifest['kind']}/{meta['name']}"


def is_subset(desired, live) -> bool:
    """True when every field of `desired` has the same value in `live`.

    The server adds fields (uid, resourceVersion, status, defaults); those are
    not drift. Lists must match element by element.
    """
    if isinstance(desired, dict):
        return isinstance(live, dict) and all(
            key in live and is_subset(value, live[key]) for key, value in desired.items()
        )
    if isinstance(desired, list):
        return (isinstance(live, list) and len(desired) == len(live)
                and all(is_subset(d, v) for d, v in zip(desired, live)))
    return desired == live


def _status_message(exc: ApiException) -> tuple[str, str]:
    """(reason, message) from the Status object the API server sends with an error."""
    try:
        status = json.loads(exc.body or "{}")
    except (TypeError, ValueError):
        return exc.reason or "", str(exc.body or exc.reason or "")
    if not isinstance(status, dict):
        return exc.reason or "", str(status)
    return status.get("reason") or exc.reason or "", status.get("message") or exc.reason or ""


def _retry_after(headers) -> float | None:
    if not headers:
        return None
    value = headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _classify(exc: Exception, what: str) -> InfraError:
    """Map a client exception to a transient or permanent infrastructure error."""
    if isinstance(exc, ApiException) and exc.status:
        reason, message = _status_message(exc)
        text = f"Kubernetes API refused {what}: {exc.status} {reason}".strip()
        if exc.status == 409:
            return TransientInfraError(text, provider_message=message,
                                       hint="another writer changed the object; retrying re-reads it")
        if exc.status == 429 or exc.status >= 500:
            return TransientInfraError(text, provider_message=message, retry_after=_retry_after(exc.headers),
                                       hint="the API server is overloaded or restarting; retry later")
        if exc.status in (401, 403):
            hint = "check the cluster credentials (kubeconfig) and the platform's RBAC permissions"
        elif exc.status == 404:
            hint = "a parent object is missing (was the namespace created, or already compensated?)"
        else:
            hint = "the manifest was rejected; fix the tenant's settings or the driver"
        if exc.status in PERMANENT_STATUSES:
            return PermanentInfraError(text, provider_message=message, hint=hint)
        return TransientInfraError(text, provider_message=message)
    if isinstance(exc, (urllib3.exceptions.HTTPError, OSError)):
        return TransientInfraError(f"Kubernetes API unreachable during {what}", provider_message=str(exc),
                                   hint="check the API endpoint and the network; retrying may succeed")
    if isinstance(exc, ApiException):  # no status: the client failed before a response
        return TransientInfraError(f"Kubernetes API call failed during {what}", provider_message=str(exc))
    return PermanentInfraError(f"Kubernetes client rejected {what}", provider_message=str(exc),
                               hint="the manifest does not match the API schema")


def _as_int(value) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _backends(rules: list[dict]) -> set[str]:
    return {path.get("backend", {}).get("service", {}).get("name")
            for rule in rules for path in (rule.get("http") or {}).get("paths", [])}


def _pointed_at(rules: list[dict], service: str) -> list[dict]:
    """The same hosts and paths, every backend replaced by `service` on SERVICE_PORT."""
    rules = copy.deepcopy(rules)
    for rule in rules:
        for path in (rule.get("http") or {}).get("paths", []):
            path["backend"] = {"service": {"name": service, "port": {"number": SERVICE_PORT}}}
    return rules


class KubernetesClusterDriver:
    """KubernetesDriver for real clusters.

    `default_cluster` serves every TenantSpec whose `cluster` is None (the
    shared cluster); a spec naming a cluster gets that cluster's own ApiClient.
    """

    def __init__(self, default_cluster: ClusterRef | None = None, *, request_timeout: float = 30,
                 ingress_namespace: str = "ingress-nginx", shared_ingress_class: str = "nginx",
                 monitoring_namespace: str = "monitoring", cluster_issuer: str = "letsencrypt-prod-dns01",
                 kube_version: str = "1.33"):
        self.default_cluster = default_cluster
        self.request_timeout = request_timeout
        self.ingress_namespace = ingress_namespace
        self.shared_ingress_class = shared_ingress_class
        self.monitoring_namespace = monitoring_namespace
        self.cluster_issuer = cluster_issuer
        self.kube_version = kube_version
        self._clients: dict[ClusterRef, k8s.ApiClient] = {}
        self._clients_lock = threading.Lock()

    # --- clients ------------------------------------------------------------------

    def api_client(self, cluster: ClusterRef | None) -> k8s.ApiClient:
        """One ApiClient (one connection pool) per cluster, built on first use.

        A cluster row with neither an endpoint nor credentials (the seeded shared clusters
        before an operator fills them in) means the default one: MATIH_KUBECONFIG / MATIH_KUBE_API.
        """
        if cluster is None or not (cluster.api_endpoint or cluster.credentials_ref):
            cluster = self.default_cluster
        if cluster is None:
            raise PermanentInfraError("no Kubernetes cluster for this tenant",
                                      hint="set MATIH_KUBE_API or select a cluster first")
        with self._clients_lock:
            api = self._clients.get(cluster)
            if api is None:
                api = k8s.ApiClient(self._configuration(cluster))
                self._clients[cluster] = api
            return api

    @staticmethod
    def _configuration(cluster: ClusterRef) -> k8s.Configuration:
        configuration = k8s.Configuration()
        if cluster.credentials_ref:
            try:
                kube_config.load_kube_config(config_file=cluster.credentials_ref,
                                             client_configuration=configuration, persist_config=False)
            except (OSError, kube_config.ConfigException) as exc:
                raise PermanentInfraError(f"cannot load the kubeconfig of cluster {cluster.name}",
                                          provider_message=str(exc),
                                          hint="check the cluster's credentials reference") from exc
        if cluster.api_endpoint:
            configuration.host = cluster.api_endpoint.rstrip("/")
        # The orchestrator owns retries (with backoff and a job-level budget).
        configuration.retries = False
        return configuration

    def close(self) -> None:
        with self._clients_lock:
            for api in self._clients.values():
                api.close()
            self._clients.clear()

    # --- manifests ----------------------------------------------------------------

    def namespace_manifests(self, spec: TenantSpec) -> list[dict]:
        ns = spec.namespace
        labels = dict(spec.labels)
        namespace = {
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": ns, "labels": {**labels, "pod-security.kubernetes.io/enforce": "baseline"}},
        }
        account = {
            "apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": ADMIN, "namespace": ns, "labels": labels,
                         "annotations": {"matih.ai/admin-email": spec.admin_email}},
        }
        # Everything a tenant admin runs; not the quota, limits or network policies,
        # which the platform owns.
        role = {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": ADMIN, "namespace": ns, "labels": labels},
            "rules": [
                {"apiGroups": [""],
                 "resources": ["pods", "pods/log", "pods/exec", "pods/portforward", "services", "endpoints",
                               "configmaps", "secrets", "persistentvolumeclaims", "serviceaccounts"],
                 "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
                {"apiGroups": ["apps"], "resources": ["deployments", "statefulsets", "replicasets", "daemonsets"],
                 "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
                {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"],
                 "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
                {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses"],
                 "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
                {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"],
                 "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
                {"apiGroups": ["", "networking.k8s.io"],
                 "resources": ["events", "resourcequotas", "limitranges", "networkpolicies"],
                 "verbs": ["get", "list", "watch"]},
            ],
        }
        binding = {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": ADMIN, "namespace": ns, "labels": labels},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": ADMIN},
            "subjects": [
                {"kind": "ServiceAccount", "name": ADMIN, "namespace": ns},
                {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": spec.admin_email},
            ],
        }
        return [namespace, account, role, binding]

    def quota_manifests(self, spec: TenantSpec) -> list[dict]:
        ns = spec.namespace
        quota = {
            "apiVersion": "v1", "kind": "ResourceQuota",
            "metadata": {"name": QUOTA, "namespace": ns, "labels": dict(spec.labels)},
            "spec": {"hard": dict(spec.quota)},
        }
        limit = {"type": "Container"}
        for key in ("default", "defaultRequest", "max", "min"):
            if spec.limit_range.get(key):
                limit[key] = dict(spec.limit_range[key])
        limits = {
            "apiVersion": "v1", "kind": "LimitRange",
            "metadata": {"name": LIMITS, "namespace": ns, "labels": dict(spec.labels)},
            "spec": {"limits": [limit]},
        }
        return [quota, limits]

    def network_policy_manifests(self, spec: TenantSpec) -> list[dict]:
        """Default deny for ingress, then the allows the tenant's services need.

        Egress stays open: tenant services reach the data-plane PostgreSQL, DNS and
        object storage, whose addresses the platform does not know per tenant.
        """
        ns = spec.namespace
        labels = dict(spec.labels)

        def policy(name: str, spec_body: dict) -> dict:
            return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                    "metadata": {"name": name, "namespace": ns, "labels": labels}, "spec": spec_body}

        def from_namespace(name: str) -> dict:
            return {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": name}}}

        policies = [
            policy("default-deny-ingress", {"podSelector": {}, "policyTypes": ["Ingress"]}),
            policy("allow-same-namespace", {"podSelector": {}, "policyTypes": ["Ingress"],
                                            "ingress": [{"from": [{"podSelector": {}}]}]}),
            policy("allow-from-ingress-controller", {"podSelector": {}, "policyTypes": ["Ingress"],
                                                     "ingress": [{"from": [from_namespace(self.ingress_namespace)]}]}),
            policy("allow-from-monitoring", {"podSelector": {}, "policyTypes": ["Ingress"],
                                             "ingress": [{"from": [from_namespace(self.monitoring_namespace)]}]}),
        ]
        if self.has_own_ingress_controller(spec):
            # The tenant's own ingress controller (ingress-controller chart) takes
            # traffic from outside the cluster on 80/443.
            policies.append(policy("allow-external-to-ingress-controller", {
                "podSelector": {"matchLabels": {"app.kubernetes.io/component": "ingress-controller"}},
                "policyTypes": ["Ingress"],
                "ingress": [{"ports": [{"protocol": "TCP", "port": 80}, {"protocol": "TCP", "port": 443}]}],
            }))
        return policies

    @staticmethod
    def has_own_ingress_controller(spec: TenantSpec) -> bool:
        return inventory.has_own_ingress_controller(spec)

    def ingress_class(self, spec: TenantSpec) -> str:
        """FREE tenants share the platform's controller; the others run their own."""
        return inventory.ingress_class(spec, self.shared_ingress_class)

    def ingress_manifest(self, spec: TenantSpec) -> dict:
        rules = []
        for prefix, service in HOST_BACKENDS.items():
            rules.append({"host": f"{prefix}{spec.dns_zone}", "http": {"paths": [{
                "path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": service, "port": {"number": SERVICE_PORT}}},
            }]}})
        return {
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {
                "name": INGRESS, "namespace": spec.namespace, "labels": dict(spec.labels),
                "annotations": {"cert-manager.io/cluster-issuer": self.cluster_issuer},
            },
            "spec": {
                "ingressClassName": self.ingress_class(spec),
                "tls": [{"hosts": list(spec.hosts), "secretName": f"{spec.slug}-tls"}],
                "rules": rules,
            },
        }

    def secret_manifest(self, spec: TenantSpec, name: str, data: dict[str, str]) -> dict:
        # `data` (base64), not `stringData`: the server never returns stringData,
        # so only `data` can be compared for drift.
        encoded = {key: base64.b64encode(value.encode()).decode() for key, value in data.items()}
        return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": name, "namespace": spec.namespace, "labels": dict(spec.labels)},
                "data": encoded}

    def suspended_service_manifest(self, spec: TenantSpec) -> dict:
        """A Service with no selector, so no endpoints: the ingress controller answers 503 for it."""
        return {"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": SUSPENDED_SERVICE, "namespace": spec.namespace, "labels": dict(spec.labels),
                             "annotations": {"matih.ai/purpose": "answers 503 while the tenant is suspended"}},
                "spec": {"type": "ClusterIP",
                         "ports": [{"name": "http", "protocol": "TCP", "port": SERVICE_PORT,
                                    "targetPort": SERVICE_PORT}]}}

    def manifests(self, spec: TenantSpec) -> list[dict]:
        return (self.namespace_manifests(spec) + self.quota_manifests(spec)
                + self.network_policy_manifests(spec) + [self.ingress_manifest(spec)])

    # --- KubernetesDriver -----------------------------------------------------------

    def ensure_namespace(self, spec: TenantSpec) -> dict:
        result = self._apply_all(spec, self.namespace_manifests(spec))
        return {"namespace": spec.namespace, **result}

    def delete_namespace(self, spec: TenantSpec) -> None:
        # Deleting the namespace deletes everything in it (the namespace controller).
        self._delete(spec, "Namespace", spec.namespace, None)

    def ensure_quotas(self, spec: TenantSpec) -> dict:
        return self._apply_all(spec, self.quota_manifests(spec))

    def delete_quotas(self, spec: TenantSpec) -> None:
        self._delete(spec, "LimitRange", LIMITS, spec.namespace)
        self._delete(spec, "ResourceQuota", QUOTA, spec.namespace)

    def ensure_network_policies(self, spec: TenantSpec) -> dict:
        """The tier's policies applied, and the ones the platform made that the tier no longer has removed.

        A tier change is a delta: PROFESSIONAL -> FREE drops the tenant's own ingress
        controller, so its allow-external policy must go too, not linger open.
        """
        manifests = self.network_policy_manifests(spec)
        result = self._apply_all(spec, manifests)
        wanted = {m["metadata"]["name"] for m in manifests}
        pruned = []
        for name in self._managed_names(spec, "NetworkPolicy"):
            if name not in wanted:
                self._delete(spec, "NetworkPolicy", name, spec.namespace)
                pruned.append(f"NetworkPolicy/{spec.namespace}/{name}")
        return {**result, "pruned": pruned}

    def delete_network_policies(self, spec: TenantSpec) -> None:
        # Allows first, the default deny last: half-way through, the namespace is
        # more closed than intended, never more open.
        names = [m["metadata"]["name"] for m in reversed(self.network_policy_manifests(spec))]
        extra = [name for name in self._managed_names(spec, "NetworkPolicy") if name not in names]
        for name in extra + names:
            self._delete(spec, "NetworkPolicy", name, spec.namespace)

    def ensure_ingress(self, spec: TenantSpec) -> dict:
        result = self._apply_all(spec, [self.ingress_manifest(spec)])
        return {"hosts": list(spec.hosts), "tlsSecret": f"{spec.slug}-tls", **result}

    def delete_ingress(self, spec: TenantSpec) -> None:
        self._delete(spec, "Ingress", INGRESS, spec.namespace)

    def ensure_secret(self, spec: TenantSpec, name: str, data: dict[str, str]) -> dict:
        # Only ids go back to the caller: the values stay in the cluster.
        return self._apply_all(spec, [self.secret_manifest(spec, name, data)])

    def delete_secret(self, spec: TenantSpec, name: str) -> None:
        self._delete(spec, "Secret", name, spec.namespace)

    def ensure_config_map(self, spec: TenantSpec, name: str, data: dict[str, str],
                          labels: dict[str, str] | None = None) -> dict:
        """Addition to the interface: a ConfigMap (the observability pipelines use it)."""
        manifest = {"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": name, "namespace": spec.namespace,
                                 "labels": {**spec.labels, **(labels or {})}},
                    "data": dict(data)}
        return self._apply_all(spec, [manifest])

    def delete_config_map(self, spec: TenantSpec, name: str) -> None:
        self._delete(spec, "ConfigMap", name, spec.namespace)

    def rollout_status(self, spec: TenantSpec) -> dict[str, bool]:
        """Deployments and StatefulSets of the namespace -> rolled out and available."""
        return {item["metadata"]["name"]: self._rolled_out(item) for _, item in self._workload_items(spec)}

    # --- the tenant's life after provisioning (LifecycleKubernetes) -------------------------

    def workloads(self, spec: TenantSpec) -> dict[str, int]:
        """Deployment/StatefulSet name -> spec.replicas (the API's default is 1)."""
        return {item["metadata"]["name"]: item.get("spec", {}).get("replicas", 1)
                for _, item in self._workload_items(spec)}

    def scale_workloads(self, spec: TenantSpec, replicas: int) -> dict:
        """Every Deployment and StatefulSet of the namespace to `replicas`.

        1. Scaling to 0 writes each workload's replicas into the annotation
           REPLICAS_BEFORE_SUSPEND in the same patch; an annotation already there is
           kept (a redelivered suspension must not record 0 as "before").
        2. A workload already where it should be is not written.
        Returns {"workloads": {name: replicas before}}.
        """
        before: dict[str, int] = {}
        for kind, item in self._workload_items(spec):
            name = item["metadata"]["name"]
            current = item.get("spec", {}).get("replicas", 1)
            annotations = item["metadata"].get("annotations") or {}
            patch: dict = {"spec": {"replicas": replicas}}
            if replicas == 0:
                recorded = _as_int(annotations.get(REPLICAS_BEFORE_SUSPEND))
                before[name] = current if recorded is None else recorded
                if current == 0 and recorded is not None:
                    continue
                patch["metadata"] = {"annotations": {REPLICAS_BEFORE_SUSPEND: str(before[name])}}
            else:
                before[name] = current
                if current == replicas:
                    continue
            self._patch(spec, kind, name, spec.namespace, patch)
            logger.info("kubernetes scaled %s %s/%s from %s to %s", kind, spec.namespace, name, current, replicas)
        return {"workloads": before}

    def restore_workloads(self, spec: TenantSpec) -> dict:
        """Each workload back to the replicas its annotation recorded; the annotation removed."""
        restored: dict[str, int] = {}
        for kind, item in self._workload_items(spec):
            name = item["metadata"]["name"]
            recorded = _as_int((item["metadata"].get("annotations") or {}).get(REPLICAS_BEFORE_SUSPEND))
            if recorded is None:
                continue  # never scaled down by a suspension (or already restored)
            self._patch(spec, kind, name, spec.namespace, {
                "metadata": {"annotations": {REPLICAS_BEFORE_SUSPEND: None}}, "spec": {"replicas": recorded}})
            restored[name] = recorded
            logger.info("kubernetes restored %s %s/%s to %s replicas", kind, spec.namespace, name, recorded)
        return {"workloads": restored}

    def patch_quota(self, spec: TenantSpec, hard: dict[str, str]) -> dict:
        """Merge `hard` into the ResourceQuota; {"previous": the old values of the keys it changed}."""
        live = self._read(spec, "ResourceQuota", QUOTA, spec.namespace)
        if live is None:
            raise PermanentInfraError(f"no ResourceQuota {spec.namespace}/{QUOTA} to patch",
                                      hint="the tenant's quotas were never configured (CONFIGURE_QUOTAS)")
        current = live.get("spec", {}).get("hard") or {}
        previous = {key: current.get(key) for key, value in hard.items() if current.get(key) != value}
        if previous:
            self._patch(spec, "ResourceQuota", QUOTA, spec.namespace, {"spec": {"hard": dict(hard)}})
            logger.info("kubernetes patched quota %s/%s: %s", spec.namespace, QUOTA, sorted(previous))
        return {"previous": previous, "hard": {**current, **hard}}

    def block_ingress(self, spec: TenantSpec) -> dict:
        """Every backend of the tenant's Ingress pointed at SUSPENDED_SERVICE, which has no endpoints (503).

        The original rules go into the annotation BACKENDS_BEFORE_SUSPEND in the same
        patch, once: a repeated block keeps the first copy. No Ingress: nothing to block.
        """
        live = self._read(spec, "Ingress", INGRESS, spec.namespace)
        if live is None:
            return {"exists": False, "blocked": False, "resources": []}
        service = self.suspended_service_manifest(spec)
        self._apply(spec, service)
        annotations = live["metadata"].get("annotations") or {}
        if not self._blocked(live):
            patch: dict = {"spec": {"rules": _pointed_at(live["spec"].get("rules") or [], SUSPENDED_SERVICE)}}
            if BACKENDS_BEFORE_SUSPEND not in annotations:
                patch["metadata"] = {"annotations": {BACKENDS_BEFORE_SUSPEND: json.dumps(
                    {"rules": live["spec"].get("rules") or []}, sort_keys=True)}}
            self._patch(spec, "Ingress", INGRESS, spec.namespace, patch)
            logger.info("kubernetes blocked ingress %s/%s", spec.namespace, INGRESS)
        return {"exists": True, "blocked": True, "service": SUSPENDED_SERVICE,
                "resources": [self.resource_of(spec, service)]}

    def unblock_ingress(self, spec: TenantSpec) -> dict:
        """The Ingress's rules back from the annotation (or, without it, the desired ones); the 503 Service deleted."""
        live = self._read(spec, "Ingress", INGRESS, spec.namespace)
        if live is not None:
            saved = (live["metadata"].get("annotations") or {}).get(BACKENDS_BEFORE_SUSPEND)
            if saved is not None:
                rules = json.loads(saved)["rules"]
            elif self._blocked(live):
                rules = self.ingress_manifest(spec)["spec"]["rules"]
            else:
                rules = None
            if rules is not None:
                self._patch(spec, "Ingress", INGRESS, spec.namespace, {
                    "metadata": {"annotations": {BACKENDS_BEFORE_SUSPEND: None}}, "spec": {"rules": rules}})
                logger.info("kubernetes unblocked ingress %s/%s", spec.namespace, INGRESS)
        self._delete(spec, "Service", SUSPENDED_SERVICE, spec.namespace)
        return {"exists": live is not None, "blocked": False}

    def ingress_state(self, spec: TenantSpec) -> dict:
        live = self._read(spec, "Ingress", INGRESS, spec.namespace)
        if live is None:
            return {"exists": False, "blocked": False, "ingressClass": None, "hosts": [], "backends": []}
        rules = live["spec"].get("rules") or []
        return {"exists": True, "blocked": self._blocked(live), "ingressClass": live["spec"].get("ingressClassName"),
                "hosts": [rule.get("host") for rule in rules], "backends": sorted(_backends(rules))}

    def leftovers(self, spec: TenantSpec) -> list[dict]:
        """What of the tenant is still on spec.cluster, asked of the API server, not of any record.

        The namespace (by name, and any namespace labelled for the tenant), and the
        cluster-scoped objects the tenant charts label for it (IngressClass, ClusterRole,
        ClusterRoleBinding), which deleting the namespace does not remove.
        """
        found = []
        selector = f"{TENANT_LABEL}={spec.slug}"
        namespaces = {item["metadata"]["name"] for item in self._list(spec, "Namespace", label_selector=selector)}
        if spec.namespace not in namespaces and self._read(spec, "Namespace", spec.namespace, None) is not None:
            namespaces.add(spec.namespace)
        found += [inventory.resource("Namespace", name, self.location(spec)) for name in sorted(namespaces)]
        for kind in CLUSTER_SCOPED_TENANT_KINDS:
            for item in self._list(spec, kind, label_selector=selector):
                found.append(inventory.resource(kind, item["metadata"]["name"], self.location(spec)))
        return found

    @staticmethod
    def _blocked(ingress: dict) -> bool:
        backends = _backends(ingress.get("spec", {}).get("rules") or [])
        return bool(backends) and backends == {SUSPENDED_SERVICE}

    @staticmethod
    def _rolled_out(workload: dict) -> bool:
        """kubectl rollout status: the controller saw the latest spec and every replica is updated and ready."""
        wanted = workload.get("spec", {}).get("replicas", 1)
        state = workload.get("status", {})
        generation = workload.get("metadata", {}).get("generation", 0)
        return (state.get("observedGeneration", 0) >= generation
                and state.get("updatedReplicas", 0) >= wanted
                and state.get("readyReplicas", 0) >= wanted
                and state.get("replicas", 0) <= wanted)

    # --- the apply loop -------------------------------------------------------------

    def location(self, spec: TenantSpec) -> str:
        """The cluster's name, as the inventory records it."""
        return inventory.cluster_location(spec, self.default_cluster)

    def resource_of(self, spec: TenantSpec, manifest: dict) -> dict:
        meta = manifest["metadata"]
        name = f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else meta["name"]
        return inventory.resource(manifest["kind"], name, self.location(spec))

    def _apply_all(self, spec: TenantSpec, manifests: list[dict]) -> dict:
        outcome: dict[str, list[str]] = {"created": [], "patched": [], "unchanged": []}
        for manifest in manifests:
            outcome[self._apply(spec, manifest)].append(object_id(manifest))
        return {"objects": [object_id(m) for m in manifests], **outcome,
                "resources": [self.resource_of(spec, m) for m in manifests]}

    def _read(self, spec: TenantSpec, kind: str, name: str, namespace: str | None) -> dict | None:
        """The live object, or None when it does not exist."""
        scope = (namespace,) if namespace else ()
        try:
            return json.loads(self._call(spec, kind, "read", name, *scope).data)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise _classify(exc, f"reading {kind} {name}") from exc
        except Exception as exc:  # noqa: BLE001
            raise _classify(exc, f"reading {kind} {name}") from exc

    def _list(self, spec: TenantSpec, kind: str, namespace: str | None = None,
              label_selector: str = "") -> list[dict]:
        scope = (namespace,) if namespace else ()
        kwargs = {"label_selector": label_selector} if label_selector else {}
        try:
            response = self._call(spec, kind, "list", *scope, **kwargs)
        except Exception as exc:  # noqa: BLE001
            raise _classify(exc, f"listing {kind} in {namespace or 'the cluster'}") from exc
        return json.loads(response.data).get("items", [])

    def _patch(self, spec: TenantSpec, kind: str, name: str, namespace: str | None, patch: dict) -> dict:
        """A JSON merge patch (RFC 7386): a null removes a key, a list is replaced whole."""
        scope = (namespace,) if namespace else ()
        try:
            response = self._call(spec, kind, "patch", name, *scope, patch,
                                  _content_type="application/merge-patch+json")
        except Exception as exc:  # noqa: BLE001
            raise _classify(exc, f"patching {kind} {namespace or ''}/{name}") from exc
        return json.loads(response.data)

    def _managed_names(self, spec: TenantSpec, kind: str) -> list[str]:
        """Names of the objects of `kind` the platform made in the tenant's namespace (by label)."""
        selector = f"{MANAGED_BY}=matih,{TENANT_LABEL}={spec.slug}"
        return sorted(item["metadata"]["name"] for item in self._list(spec, kind, spec.namespace, selector))

    def _workload_items(self, spec: TenantSpec) -> list[tuple[str, dict]]:
        # List items carry no kind (as the API server sends them): pair each with its kind.
        return [(kind, item) for kind in WORKLOAD_KINDS for item in self._list(spec, kind, spec.namespace)]

    def _call(self, spec: TenantSpec, kind: str, verb: str, *args, **kwargs):
        info = KINDS[kind]
        api = info.api(self.api_client(spec.cluster))
        scope = "namespaced_" if info.namespaced else ""
        method = getattr(api, f"{verb}_{scope}{info.snake}")
        return method(*args, _preload_content=False, _request_timeout=self.request_timeout, **kwargs)

    def _args(self, manifest: dict) -> tuple[str, str | None]:
        meta = manifest["metadata"]
        return meta["name"], meta.get("namespace")

    def _apply(self, spec: TenantSpec, manifest: dict) -> str:
        kind = manifest["kind"]
        name, namespace = self._args(manifest)
        scope = (namespace,) if namespace else ()
        what = f"{kind} {object_id(manifest)}"
        try:
            self._call(spec, kind, "create", *scope, copy.deepcopy(manifest),
                       _headers={"Content-Type": "application/json"})
            logger.info("kubernetes created %s", object_id(manifest))
            return "created"
        except ApiException as exc:
            if exc.status != 409:
                raise _classify(exc, f"creating {what}") from exc
        except Exception as exc:  # noqa: BLE001
            raise _classify(exc, f"creating {what}") from exc
        try:
            live = json.loads(self._call(spec, kind, "read", name, *scope).data)
        except Exception as exc:  # noqa: BLE001
            raise _classify(exc, f"reading {what}") from exc
        if kind == "Namespace" and live.get("status", {}).get("phase") == "Terminating":
            raise TransientInfraError(f"namespace {name} is still being deleted",
                                      hint="a previous rollback is finishing; retry once it is gone")
        if is_subset(manifest, live):
            return "unchanged"
        try:
            self._call(spec, kind, "patch", name, *scope, manifest, _content_type="application/merge-patch+json")
        except Exception as exc:  # noqa: BLE001
            raise _classify(exc, f"patching {what}") from exc
        logger.info("kubernetes patched drifted %s", object_id(manifest))
        return "patched"

    def _delete(self, spec: TenantSpec, kind: str, name: str, namespace: str | None) -> None:
        scope = (namespace,) if namespace else ()
        try:
            self._call(spec, kind, "delete", name, *scope)
            logger.info("kubernetes deleted %s %s/%s", kind, namespace or "", name)
        except ApiException as exc:
            if exc.status == 404:
                return
            raise _classify(exc, f"deleting {kind} {name}") from exc
        except Exception as exc:  # noqa: BLE001
            raise _classify(exc, f"deleting {kind} {name}") from exc
