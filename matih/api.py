"""Shared REST plumbing: the JSON parser, pagination and the error shape.

Every error answer has one shape:
    {"error": "<code>", "detail": "<sentence>", "fields": {"<field>": ["<reason>", ...]}}
`fields` appears only for validation errors (400).
"""
from __future__ import annotations

import json
import re
import logging
import math

from django.conf import settings
from django.db import DatabaseError, OperationalError
from django.http import JsonResponse
from django.views import defaults
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.parsers import BaseParser
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework.views import set_rollback

from matih.paths import answers_json, not_found_body

log = logging.getLogger("matih.api")

# Deeper JSON than this is refused: no setting needs it, and Python's recursion
# limit and PostgreSQL's jsonb would fail on far less than the body limit allows.
MAX_JSON_DEPTH = 32


class BodyError(exceptions.ParseError):
    """A request body that cannot be read: too large (413), not JSON, not an object, unstorable text (400)."""

    def __init__(self, reason: str, field: str = "body", http_status: int = status.HTTP_400_BAD_REQUEST):
        super().__init__(detail=reason)
        self.reason = reason
        self.field = field
        self.http_status = http_status


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:20]} is out of range")
    return value


def _storable_text_problem(text: str) -> str | None:
    """Why PostgreSQL could not store this string, or None."""
    if "\x00" in text:
        return "Null characters (\\u0000) are not allowed."
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "Unpaired UTF-16 surrogates are not allowed."
    return None


def check_storable(data) -> None:
    """Refuse JSON that parses but that the database cannot hold, naming where it is.

    1. Walk the document iteratively (never recursively: depth is what is checked).
    2. Any container deeper than MAX_JSON_DEPTH is refused, named by its top-level field.
    3. Any key or string with NUL or an unpaired surrogate is refused, named by its path.
    """
    stack = [("", data, 0)]
    while stack:
        path, value, depth = stack.pop()
        if isinstance(value, str):
            problem = _storable_text_problem(value)
            if problem:
                raise BodyError(problem, field=path or "body")
        elif isinstance(value, (dict, list)):
            if depth >= MAX_JSON_DEPTH:
                top = path.split(".", 1)[0].split("[", 1)[0]
                raise BodyError(f"Nested more than {MAX_JSON_DEPTH} levels deep.", field=top or "body")
            if isinstance(value, dict):
                for key, inner in value.items():
                    problem = _storable_text_problem(key)
                    if problem:
                        raise BodyError(problem, field=path or "body")
                    stack.append((f"{path}.{key}" if path else key, inner, depth + 1))
            else:
                stack.extend((f"{path}[{index}]", inner, depth + 1) for index, inner in enumerate(value))


class BoundedJSONParser(BaseParser):
    """JSON bodies up to MATIH_MAX_BODY_BYTES, strict (no NaN or Infinity), storable as they are."""

    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.MATIH_MAX_BODY_BYTES
        request = (parser_context or {}).get("request")
        declared = request.META.get("CONTENT_LENGTH") if request is not None else None
        too_large = f"The body is larger than {limit} bytes."
        if declared and declared.isdigit() and int(declared) > limit:
            raise BodyError(too_large, http_status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise BodyError(too_large, http_status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
        try:
            data = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant, parse_float=_finite_float)
        except RecursionError:
            raise BodyError(f"The body is not valid JSON: nested more than {MAX_JSON_DEPTH} levels deep.") from None
        except (UnicodeDecodeError, ValueError) as exc:
            raise BodyError(f"The body is not valid JSON: {exc}.") from None
        check_storable(data)
        return data


class Pagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "pageSize"
    max_page_size = 500

    def get_schema_operation_parameters(self, view):
        return [
            {"name": self.page_query_param, "required": False, "in": "query",
             "description": "The page, from 1; past the last page is a 404.",
             "schema": {"type": "integer", "minimum": 1}},
            {"name": self.page_size_query_param, "required": False, "in": "query",
             "description": f"Results per page (default {self.page_size}, at most {self.max_page_size}).",
             "schema": {"type": "integer", "minimum": 1, "maximum": self.max_page_size}},
        ]


def error_body(code: str, detail: str, fields: dict | None = None) -> dict:
    """The one error shape, for DRF views (error_response) and plain Django views alike."""
    body = {"error": code, "detail": detail}
    if fields:
        body["fields"] = fields
    return body


def error_response(code: str, detail: str, http_status: int, fields: dict | None = None, headers=None) -> Response:
    return Response(error_body(code, detail, fields), status=http_status, headers=headers)


def not_found(thing: str = "tenant") -> Response:
    """404 in the error shape. A resource the key may not see gets the very same answer as a missing one."""
    return error_response("not_found", f"No such {thing}.", status.HTTP_404_NOT_FOUND)


def _flatten(errors) -> dict:
    """DRF's nested error dict -> {"a.b": ["reason"]}."""
    flat: dict[str, list[str]] = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                if key == "non_field_errors":  # a nested object's own errors belong to its field
                    walk(prefix or "body", inner)
                elif isinstance(key, int):  # a list's errors, by the items' positions
                    walk(f"{prefix}[{key}]", inner)
                else:
                    walk(f"{prefix}.{key}" if prefix else key, inner)
        elif isinstance(value, list) and value and all(isinstance(v, (str, exceptions.ErrorDetail)) for v in value):
            flat.setdefault(prefix or "body", []).extend(str(v) for v in value)
        elif isinstance(value, list):
            for index, inner in enumerate(value):
                walk(f"{prefix}[{index}]", inner)
        else:
            flat.setdefault(prefix or "body", []).append(str(value))

    walk("", errors)
    return flat


def exception_handler(exc, context):
    if isinstance(exc, BodyError):
        code = "payload_too_large" if exc.http_status == status.HTTP_413_REQUEST_ENTITY_TOO_LARGE else "invalid_request"
        return error_response(code, f"{exc.field}: {exc.reason}", exc.http_status, {exc.field: [exc.reason]})
    if isinstance(exc, exceptions.ValidationError):
        fields = _flatten(exc.detail)
        summary = "; ".join(f"{name}: {reasons[0]}" for name, reasons in fields.items())
        return error_response("invalid_request", summary, status.HTTP_400_BAD_REQUEST, fields)
    response = drf_exception_handler(exc, context)
    if response is None:
        return _unexpected_error(exc, context)
    codes = {
        401: "unauthenticated",
        403: "forbidden",
        404: "not_found",
        405: "method_not_allowed",
        406: "not_acceptable",
        415: "unsupported_media_type",
        429: "throttled",
    }
    detail = response.data.get("detail", "") if isinstance(response.data, dict) else str(response.data)
    response.data = {"error": codes.get(response.status_code, "error"), "detail": str(detail)}
    return response


def _unexpected_error(exc, context):
    """Anything not an API error still answers in the error shape; the traceback goes to the log.

    A database that is unreachable, or a transaction that lost its serialization
    retries, is 503: the client may try again. Anything else is a 500. With
    MATIH_DEBUG the exception propagates to Django's debug page instead.
    """
    if settings.DEBUG:
        return None
    set_rollback()
    view = context.get("view")
    log.error("unhandled error in %s", type(view).__name__ if view else "a view", exc_info=exc)
    if isinstance(exc, OperationalError):
        return error_response(
            "unavailable", "The database is busy or unreachable; try again shortly.",
            status.HTTP_503_SERVICE_UNAVAILABLE, headers={"Retry-After": "1"},
        )
    kind = "database" if isinstance(exc, DatabaseError) else "server"
    return error_response(
        "internal_error", f"An unexpected {kind} error occurred; it has been logged with this request's id.",
        status.HTTP_500_INTERNAL_SERVER_ERROR,
    )


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    """Describes iam.auth.ApiKeyAuthentication in the OpenAPI schema (and the docs' Authorize button)."""

    target_class = "iam.auth.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "A MATIH API key: `Authorization: Bearer mk_…`"}


# --- Django's error pages (handler400/403/404/500 in matih/urls.py) -----------------------------
# A view that is not DRF's (the SSE stream, a Django view) or a request refused before
# any view (a bad Host header) gets these; under /api/ and /ws/ they answer in the error shape.


def bad_request(request, exception):
    if answers_json(request.path):
        return JsonResponse({"error": "bad_request", "detail": "The request could not be understood."}, status=400)
    return defaults.bad_request(request, exception)


def permission_denied(request, exception):
    if answers_json(request.path):
        return JsonResponse({"error": "forbidden", "detail": "You may not do this."}, status=403)
    return defaults.permission_denied(request, exception)


def page_not_found(request, exception):
    if answers_json(request.path):
        return JsonResponse(not_found_body(request.path), status=404)
    return defaults.page_not_found(request, exception)


def server_error(request):
    if answers_json(request.path):
        return JsonResponse({"error": "internal_error", "detail": "An unexpected server error occurred; it has "
                             "been logged with this request's id."}, status=500)
    return defaults.server_error(request)


# --- Idempotency-Key: the header every POST and DELETE that makes something honours -------------------

MAX_IDEMPOTENCY_KEY = 255
IDEMPOTENCY_KEY_PATTERN = re.compile(r"^[\x21-\x7e]{1,%d}$" % MAX_IDEMPOTENCY_KEY)
IDEMPOTENCY_KEY_REASON = f"Must be 1-{MAX_IDEMPOTENCY_KEY} printable ASCII characters without spaces."


def idempotency_key_problem(raw: str | None) -> Response | None:
    """The 400 for a malformed Idempotency-Key header, or None (absent or well-formed)."""
    if raw is None or IDEMPOTENCY_KEY_PATTERN.fullmatch(raw):
        return None
    return error_response("invalid_request", f"Idempotency-Key: {IDEMPOTENCY_KEY_REASON}",
                          status.HTTP_400_BAD_REQUEST, {"Idempotency-Key": [IDEMPOTENCY_KEY_REASON]})


def idempotency_key_parameter(description: str):
    from drf_spectacular.utils import OpenApiParameter

    return OpenApiParameter(
        "Idempotency-Key", {"type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY,
                            "pattern": IDEMPOTENCY_KEY_PATTERN.pattern}, OpenApiParameter.HEADER, required=False,
        description=description)
