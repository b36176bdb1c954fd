"""A fake Kubernetes API server owned by the tests.

A threaded HTTP server on 127.0.0.1 that answers the REST paths the drivers use (and Helm 4: discovery, OpenAPI v3, server-side apply, release Secrets)
the way kube-apiserver does: 201 Created, 200 OK, and Status objects for 404
NotFound, 409 AlreadyExists and 422 Invalid. Every body written (POST, and the
result of a PATCH) is validated with kubernetes-validate in strict mode, so an
unknown or misplaced field is a 422 here as it would be a strict-validation
error there. Names are checked as DNS-1123 like the real server does.

Simplifications, on purpose: deleting a namespace removes its objects at once
(the real namespace controller does it asynchronously), and both merge-patch
flavours apply RFC 7386 (the driver sends only application/merge-patch+json).

`FakeKubeApi(run_workloads=True)` also plays the controllers and kubelets of a healthy
cluster: every Deployment and StatefulSet written is rolled out at once (its status
says every replica of the latest generation is updated and ready), so a tenant can be
verified and complete. Without it nothing runs, as on a cluster with no nodes.
"""
from __future__ import annotations

import copy
import itertools
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import kubernetes_validate

from tests.drivers import kube_protobuf

KUBE_VERSION = "1.33"

# plural -> (kind, namespaced, apiVersion)
RESOURCES = {
    "namespaces": ("Namespace", False, "v1"),
    "serviceaccounts": ("ServiceAccount", True, "v1"),
    "secrets": ("Secret", True, "v1"),
    "configmaps": ("ConfigMap", True, "v1"),
    "services": ("Service", True, "v1"),
    "resourcequotas": ("ResourceQuota", True, "v1"),
    "limitranges": ("LimitRange", True, "v1"),
    "roles": ("Role", True, "rbac.authorization.k8s.io/v1"),
    "rolebindings": ("RoleBinding", True, "rbac.authorization.k8s.io/v1"),
    "clusterroles": ("ClusterRole", False, "rbac.authorization.k8s.io/v1"),
    "clusterrolebindings": ("ClusterRoleBinding", False, "rbac.authorization.k8s.io/v1"),
    "networkpolicies": ("NetworkPolicy", True, "networking.k8s.io/v1"),
    "ingresses": ("Ingress", True, "networking.k8s.io/v1"),
    "ingressclasses": ("IngressClass", False, "networking.k8s.io/v1"),
    "deployments": ("Deployment", True, "apps/v1"),
    "statefulsets": ("StatefulSet", True, "apps/v1"),
    "poddisruptionbudgets": ("PodDisruptionBudget", True, "policy/v1"),
}
VERBS = ["create", "delete", "get", "list", "patch", "update"]


def group_versions() -> dict[str, list[str]]:
    versions: dict[str, list[str]] = {}
    for plural, (_, _, api_version) in RESOURCES.items():
        versions.setdefault(api_version, []).append(plural)
    return versions


def resource_list(api_version: str) -> dict:
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": api_version, "resources": [
        {"name": plural, "singularName": RESOURCES[plural][0].lower(), "namespaced": RESOURCES[plural][1],
         "kind": RESOURCES[plural][0], "verbs": VERBS} for plural in group_versions()[api_version]]}


def group_list() -> dict:
    groups = []
    for api_version in group_versions():
        if "/" in api_version:
            group, version = api_version.split("/")
            entry = {"groupVersion": api_version, "version": version}
            groups.append({"name": group, "versions": [entry], "preferredVersion": entry})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def openapi_path(api_version: str) -> str:
    return "api/v1" if api_version == "v1" else f"apis/{api_version}"


def openapi_document(api_version: str) -> dict:
    """Just enough OpenAPI v3 for clients to see that PATCH takes fieldValidation (server-side validation)."""
    group, _, version = api_version.rpartition("/")
    paths = {}
    for plural in group_versions()[api_version]:
        kind, namespaced, _ = RESOURCES[plural]
        scope = "namespaces/{namespace}/" if namespaced else ""
        paths[f"/{openapi_path(api_version)}/{scope}{plural}/{{name}}"] = {"patch": {
            "x-kubernetes-group-version-kind": {"group": group, "version": version, "kind": kind},
            "parameters": [{"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
                           {"name": "fieldManager", "in": "query", "schema": {"type": "string"}}],
            "responses": {"200": {"description": "OK"}},
        }}
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.33.0"}, "paths": paths,
            "components": {"schemas": {}}}


def matches_selector(obj: dict, selector: str) -> bool:
    """Equality-based label selectors (`a=b,c==d,e!=f`), the kind Helm's release storage uses."""
    labels = obj.get("metadata", {}).get("labels") or {}
    for term in filter(None, selector.split(",")):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        else:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key) != value:
                return False
    return True


DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def status(code: int, reason: str, message: str, *, kind: str = "", name: str = "") -> dict:
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "code": code, "message": message,
            "status": "Success" if code < 400 else "Failure"}
    if reason:
        body["reason"] = reason
    if kind or name:
        body["details"] = {"name": name, "kind": kind}
    return body


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


@dataclass
class Fault:
    """Answer the next request matching `method` and `path_contains` with `code` (or a delay)."""

    method: str
    path_contains: str
    code: int = 500
    reason: str = "InternalError"
    message: str = "injected failure"
    headers: dict = field(default_factory=dict)
    delay: float = 0.0
    times: int = 1


@dataclass
class Request:
    method: str
    path: str
    content_type: str
    authorization: str
    body: dict | list | None
    code: int = 0  # the answer's status, filled in when sent


class FakeKubeApi(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, *, run_workloads: bool = False):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.run_workloads = run_workloads
        self.objects: dict[tuple[str, str, str], dict] = {}  # (plural, namespace, name) -> object
        self.requests: list[Request] = []
        self.faults: list[Fault] = []
        self.validated: list[dict] = []
        self.applied: list[tuple[str, str, str]] = []  # server-side applies, in order
        self.lock = threading.Lock()
        self._versions = itertools.count(1)
        self._next_ip = 10
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def handle_error(self, request, client_address) -> None:
        pass  # a client that gave up (a timeout test) is not a server error

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def start(self) -> "FakeKubeApi":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    # --- test helpers ----------------------------------------------------------

    def inject(self, fault: Fault) -> None:
        with self.lock:
            self.faults.append(fault)

    def get(self, plural: str, namespace: str, name: str) -> dict | None:
        with self.lock:
            return copy.deepcopy(self.objects.get((plural, namespace, name)))

    def put(self, plural: str, namespace: str, obj: dict) -> None:
        """Store an object directly, as another writer (or a controller) would."""
        with self.lock:
            self.objects[(plural, namespace, obj["metadata"]["name"])] = copy.deepcopy(obj)

    def remove(self, plural: str, namespace: str, name: str) -> None:
        """Delete an object directly, as another writer (an operator with kubectl) would."""
        with self.lock:
            del self.objects[(plural, namespace, name)]

    def names(self, plural: str, namespace: str = "") -> list[str]:
        with self.lock:
            return sorted(n for (p, ns, n) in self.objects if p == plural and ns == namespace)

    def calls(self, method: str | None = None, path_contains: str = "") -> list[Request]:
        return [r for r in self.requests
                if (method is None or r.method == method) and path_contains in r.path]

    # --- the API ---------------------------------------------------------------

    def take_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.method == method and fault.path_contains in path:
                    fault.times -= 1
                    if fault.times <= 0:
                        self.faults.remove(fault)
                    return fault
        return None

    def validate(self, obj: dict) -> str | None:
        """None when the object is valid; else the reason, as the server's 422 would say it."""
        try:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            return f"{path}: {exc.message}"
        self.validated.append(copy.deepcopy(obj))
        return None

    def stamp(self, obj: dict, namespace: str) -> dict:
        meta = obj.setdefault("metadata", {})
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
        meta["resourceVersion"] = str(next(self._versions))
        meta["generation"] = meta.get("generation", 0) + 1
        if namespace:
            meta["namespace"] = namespace
        if obj["kind"] == "Namespace":
            meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
            obj["spec"] = {"finalizers": ["kubernetes"]}
            obj["status"] = {"phase": "Active"}
        if obj["kind"] == "Service":
            # What the API server defaults and allocates for a ClusterIP Service.
            service = obj.setdefault("spec", {})
            if service.get("type", "ClusterIP") == "ClusterIP" and "clusterIP" not in service:
                service["clusterIP"] = f"10.96.{self._next_ip // 256}.{self._next_ip % 256}"
                self._next_ip += 1
            service.setdefault("type", "ClusterIP")
            service.setdefault("clusterIPs", [service["clusterIP"]] if service.get("clusterIP") else [])
            service.setdefault("sessionAffinity", "None")
            service.setdefault("internalTrafficPolicy", "Cluster")
        if self.run_workloads and obj["kind"] in ("Deployment", "StatefulSet"):
            # The controller saw this generation and every replica started.
            replicas = obj.get("spec", {}).get("replicas", 1)
            obj["status"] = {"observedGeneration": meta["generation"], "replicas": replicas,
                             "updatedReplicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas}
        if obj["kind"] == "Secret" and "stringData" in obj:
            import base64
            data = obj.setdefault("data", {})
            for key, value in obj.pop("stringData").items():
                data[key] = base64.b64encode(value.encode()).decode()
        return obj


def parse_path(path: str) -> tuple[str, str, str, str] | None:
    """-> (api_version, namespace, plural, name) for /api/v1/... and /apis/{g}/{v}/...

    A subresource path (.../deployments/x/scale, .../status) is None: this server
    does not serve them, and must not answer one as if it were the object.
    """
    parts = [p for p in path.split("?")[0].split("/") if p]
    if parts[:2] == ["api", "v1"]:
        api_version, rest = "v1", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        api_version, rest = f"{parts[1]}/{parts[2]}", parts[3:]
    else:
        return None
    namespace = ""
    if len(rest) >= 3 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    if not rest or rest[0] not in RESOURCES or RESOURCES[rest[0]][2] != api_version or len(rest) > 2:
        return None
    return api_version, namespace, rest[0], rest[1] if len(rest) > 1 else ""


DISCOVERY = {
    "/version": lambda: {"major": "1", "minor": KUBE_VERSION.split(".")[1], "gitVersion": f"v{KUBE_VERSION}.0",
                         "platform": "linux/amd64"},
    "/api": lambda: {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []},
    "/apis": group_list,
    "/api/v1": lambda: resource_list("v1"),
    **{f"/apis/{gv}": (lambda gv=gv: resource_list(gv)) for gv in group_versions() if "/" in gv},
    "/openapi/v3": lambda: {"paths": {openapi_path(gv): {"serverRelativeURL": f"/openapi/v3/{openapi_path(gv)}?hash=0"}
                                      for gv in group_versions()}},
}


class _Handler(BaseHTTPRequestHandler):
    server: FakeKubeApi
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet
        pass

    def _send(self, code: int, body: dict, headers: dict | None = None) -> None:
        payload = json.dumps(body).encode()
        if getattr(self, "current", None) is not None:
            self.current.code = code
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for key, value in (headers or {}).items():
            self.send_header(key, str(value))
        self.end_headers()
        self.wfile.write(payload)

    def _body(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return raw  # not JSON (protobuf, CBOR): answered 415 below

    def _handle(self, method: str) -> None:
        body = self._body()
        server = self.server
        self.current = Request(method, self.path, self.headers.get("Content-Type", ""),
                               self.headers.get("Authorization", ""), body)
        server.requests.append(self.current)
        if isinstance(body, bytes) and method == "DELETE":
            body = None  # DeleteOptions: nothing the fake needs
        if isinstance(body, bytes):
            ctype = self.headers.get("Content-Type", "")
            try:
                if not ctype.startswith("application/vnd.kubernetes.protobuf"):
                    raise ValueError(ctype)
                body = self.current.body = kube_protobuf.decode(body)
            except (ValueError, IndexError):
                return self._send(415, status(415, "UnsupportedMediaType",
                                              f"the body of type {ctype} is not supported"))
        fault = server.take_fault(method, self.path)
        if fault is not None:
            if fault.delay:
                time.sleep(fault.delay)
            if fault.code:
                return self._send(fault.code, status(fault.code, fault.reason, fault.message), fault.headers)
        path, _, query = self.path.partition("?")
        params = {k: v[-1] for k, v in parse_qs(query).items()}
        if method == "GET" and path in DISCOVERY:
            return self._send(200, DISCOVERY[path]())
        if method == "GET" and path.startswith("/openapi/v3/"):
            wanted = path.removeprefix("/openapi/v3/")
            for api_version in group_versions():
                if openapi_path(api_version) == wanted:
                    return self._send(200, openapi_document(api_version))
        parsed = parse_path(self.path)
        if parsed is None:
            return self._send(404, status(404, "NotFound", "the server could not find the requested resource"))
        api_version, namespace, plural, name = parsed
        kind = RESOURCES[plural][0]
        if plural == "namespaces" and name:
            namespace = ""
        with server.lock:
            if method == "POST" and not name:
                return self._create(api_version, kind, plural, namespace, body)
            if method == "PATCH" and "apply-patch" in self.headers.get("Content-Type", ""):
                return self._apply(api_version, kind, plural, namespace, name, body)
            if method == "GET" and not name:
                selector = params.get("labelSelector", "")
                # As kube-apiserver sends a list: the items without their kind and apiVersion.
                items = [{k: copy.deepcopy(v) for k, v in o.items() if k not in ("kind", "apiVersion")}
                         for (p, ns, _), o in sorted(server.objects.items())
                         if p == plural and ns == namespace and matches_selector(o, selector)]
                return self._send(200, {"kind": f"{kind}List", "apiVersion": api_version,
                                        "metadata": {"resourceVersion": "1"}, "items": items})
            key = (plural, namespace, name)
            live = server.objects.get(key)
            if live is None:
                return self._send(404, status(404, "NotFound", f'{plural} "{name}" not found',
                                              kind=plural, name=name))
            if method == "GET":
                return self._send(200, live)
            if method == "PATCH":
                ctype = self.headers.get("Content-Type", "")
                if "merge-patch" not in ctype:
                    return self._send(415, status(415, "UnsupportedMediaType", f"unsupported patch {ctype}"))
                merged = merge_patch(live, body)
                problem = server.validate(merged)
                if problem:
                    return self._send(422, status(422, "Invalid", f'{kind} "{name}" is invalid: {problem}',
                                                  kind=plural, name=name))
                server.objects[key] = server.stamp(merged, namespace)
                return self._send(200, server.objects[key])
            if method == "PUT":
                if not isinstance(body, dict) or body.get("metadata", {}).get("name") != name:
                    return self._send(400, status(400, "BadRequest", "the name of the object does not match"))
                problem = server.validate(body)
                if problem:
                    return self._send(422, status(422, "Invalid", f'{kind} "{name}" is invalid: {problem}',
                                                  kind=plural, name=name))
                server.objects[key] = server.stamp(copy.deepcopy(body), namespace)
                return self._send(200, server.objects[key])
            if method == "DELETE":
                del server.objects[key]
                if kind == "Namespace":
                    for other in [k for k in server.objects if k[1] == name]:
                        del server.objects[other]
                return self._send(200, status(200, "", "", kind=plural, name=name))
        return self._send(405, status(405, "MethodNotAllowed", "method not allowed"))

    def _apply(self, api_version: str, kind: str, plural: str, namespace: str, name: str, body) -> None:
        """Server-side apply (Helm 4): create the object, or merge the applied fields into it."""
        server = self.server
        if not isinstance(body, dict) or body.get("kind") != kind or body.get("metadata", {}).get("name") != name:
            return self._send(400, status(400, "BadRequest", f"the body is not the {kind} {name}"))
        if namespace and ("namespaces", "", namespace) not in server.objects:
            return self._send(404, status(404, "NotFound", f'namespaces "{namespace}" not found',
                                          kind="namespaces", name=namespace))
        key = (plural, namespace, name)
        live = server.objects.get(key)
        merged = merge_patch(live, body) if live is not None else copy.deepcopy(body)
        problem = server.validate(merged)
        if problem:
            return self._send(422, status(422, "Invalid", f'{kind} "{name}" is invalid: {problem}',
                                          kind=plural, name=name))
        server.objects[key] = server.stamp(merged, namespace)
        server.applied.append(key)
        return self._send(201 if live is None else 200, server.objects[key])

    def _create(self, api_version: str, kind: str, plural: str, namespace: str, body) -> None:
        server = self.server
        ctype = self.headers.get("Content-Type", "")
        if ctype and not ctype.startswith(("application/json", "application/vnd.kubernetes.protobuf")):
            return self._send(415, status(415, "UnsupportedMediaType", f"unsupported media type {ctype}"))
        if not isinstance(body, dict) or body.get("kind") != kind or body.get("apiVersion") != api_version:
            return self._send(400, status(400, "BadRequest", f"the body is not a {api_version} {kind}"))
        name = body.get("metadata", {}).get("name", "")
        pattern = DNS_LABEL if kind == "Namespace" else DNS_SUBDOMAIN
        if not name or len(name) > (63 if kind == "Namespace" else 253) or not pattern.match(name):
            return self._send(422, status(
                422, "Invalid",
                f'{kind} "{name}" is invalid: metadata.name: Invalid value: "{name}": a lowercase RFC 1123 '
                "label must consist of lower case alphanumeric characters or '-'", kind=plural, name=name))
        if body["metadata"].get("namespace", namespace) != namespace:
            return self._send(400, status(400, "BadRequest", "the namespace of the object does not match"))
        problem = server.validate(body)
        if problem:
            return self._send(422, status(422, "Invalid", f'{kind} "{name}" is invalid: {problem}',
                                          kind=plural, name=name))
        if namespace and ("namespaces", "", namespace) not in server.objects:
            return self._send(404, status(404, "NotFound", f'namespaces "{namespace}" not found',
                                          kind="namespaces", name=namespace))
        key = (plural, namespace, name)
        if key in server.objects:
            return self._send(409, status(409, "AlreadyExists", f'{plural} "{name}" already exists',
                                          kind=plural, name=name))
        server.objects[key] = server.stamp(copy.deepcopy(body), namespace)
        return self._send(201, server.objects[key])

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def do_PATCH(self):
        self._handle("PATCH")

    def do_DELETE(self):
        self._handle("DELETE")

    def do_PUT(self):
        self._handle("PUT")
