"""Structured logs with a request id, and HTTP metrics.

Every log line is one JSON object. A request's id comes from the
`X-Request-ID` header (or is made here), is echoed back in the response, and is
attached to every line logged while the request runs. Secrets never reach the
logs: the access line records the path without its query string, and
`redact()` masks anything that looks like a key.
"""
from __future__ import annotations

import contextvars
import json
import logging
import re
import time
import uuid
from datetime import datetime, timezone

from prometheus_client import Counter, Histogram

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

_SECRET_PATTERN = re.compile(r"(mk_[A-Za-z0-9]{8}_)[A-Za-z0-9_\-]+")
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._\-]{1,64}$")

HTTP_REQUESTS = Counter(
    "matih_http_requests_total", "HTTP requests served", ["method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "matih_http_request_duration_seconds", "HTTP request duration", ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)

access_log = logging.getLogger("matih.access")


def redact(text: str) -> str:
    """Mask the secret part of anything shaped like an API key."""
    return _SECRET_PATTERN.sub(r"\1****", text)


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


_STANDARD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "request_id"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "ts": datetime.fromtimestamp(record.created, tz=timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        request_id = getattr(record, "request_id", None)
        if request_id:
            payload["requestId"] = request_id
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                payload[key] = redact(value) if isinstance(value, str) else value
        if record.exc_info:
            payload["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(payload, default=str)


# Label values must be bounded (each is a series kept for the life of the process): a method
# outside RFC 9110's set counts as "other", a path as its route template, never as itself.
STANDARD_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"})


def _method_of(request) -> str:
    return request.method if request.method in STANDARD_METHODS else "other"


def _route_of(request) -> str:
    match = getattr(request, "resolver_match", None)
    if match is not None and match.route:
        return "/" + match.route
    return "unmatched"


class RequestContextMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if _SAFE_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        try:
            response = self.get_response(request)
        finally:
            request_id_var.reset(token)
        elapsed = time.perf_counter() - started
        route, method = _route_of(request), _method_of(request)
        response["X-Request-ID"] = request_id
        HTTP_REQUESTS.labels(method, route, str(response.status_code)).inc()
        HTTP_LATENCY.labels(method, route).observe(elapsed)
        if route not in ("/healthz", "/metrics"):
            access_log.info(
                "%s %s %s", request.method, request.path, response.status_code,
                extra={
                    "requestId": request_id,
                    "method": request.method,
                    "path": request.path,
                    "status": response.status_code,
                    "durationMs": round(elapsed * 1000, 2),
                },
            )
        return response
