"""Liveness, readiness and Prometheus metrics."""
from __future__ import annotations

import os

from django.conf import settings
from django.db import connection
from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess

from matih.api import error_body
from provisioning.metrics import job_metrics_text


def read_only(view):
    """GET and HEAD; any other method is a JSON 405 in the API's error shape (not CSRF's HTML 403:
    these are probed by load balancers and scrapers, never by a browser form)."""

    @csrf_exempt
    def wrapped(request, *args, **kwargs):
        if request.method not in ("GET", "HEAD"):
            response = JsonResponse(error_body("method_not_allowed", f"Method \"{request.method[:20]}\" not allowed: "
                                               f"{request.path} answers GET."), status=405)
            response["Allow"] = "GET, HEAD"
            return response
        return view(request, *args, **kwargs)

    wrapped.__name__ = view.__name__
    wrapped.__doc__ = view.__doc__
    return wrapped


@read_only
def healthz(request):
    return JsonResponse({"status": "ok"})


def _database_ok() -> str | None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return None
    except Exception as exc:  # the answer is the report
        return str(exc)


def _broker_ok() -> str | None:
    import redis

    try:
        client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
        client.ping()
        client.close()
        return None
    except Exception as exc:
        return str(exc)


@read_only
def readyz(request):
    checks = {"database": _database_ok(), "broker": _broker_ok()}
    ready = all(problem is None for problem in checks.values())
    body = {
        "status": "ready" if ready else "not ready",
        "checks": {name: ("ok" if problem is None else problem) for name, problem in checks.items()},
    }
    return JsonResponse(body, status=200 if ready else 503)


@read_only
def metrics(request):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    output = generate_latest(registry)
    output += job_metrics_text()
    return HttpResponse(output, content_type=CONTENT_TYPE_LATEST)
