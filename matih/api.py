"""Shared REST plumbing: the JSON parser, pagination and the error shape.

Every error answer has one shape:
    {"error": "<code>", "detail": "<sentence>", "fields": {"<field>": ["<reason>", ...]}}
`fields` appears only for validation errors (400).
"""
from __future__ import annotations

import json

from django.conf import settings
from rest_framework import exceptions, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.parsers import BaseParser
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


class BodyError(exceptions.ParseError):
    """A request body that cannot be read: too large, not JSON, not an object."""

    def __init__(self, reason: str):
        super().__init__(detail=reason)
        self.reason = reason


class BoundedJSONParser(BaseParser):
    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.MATIH_MAX_BODY_BYTES
        request = (parser_context or {}).get("request")
        declared = request.META.get("CONTENT_LENGTH") if request is not None else None
        if declared and declared.isdigit() and int(declared) > limit:
            raise BodyError(f"The body is larger than {limit} bytes.")
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise BodyError(f"The body is larger than {limit} bytes.")
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise BodyError(f"The body is not valid JSON: {exc}.") from None
        return data


class Pagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "pageSize"
    max_page_size = 500


def error_response(code: str, detail: str, http_status: int, fields: dict | None = None, headers=None) -> Response:
    body = {"error": code, "detail": detail}
    if fields:
        body["fields"] = fields
    return Response(body, status=http_status, headers=headers)


def _flatten(errors) -> dict:
    """DRF's nested error dict -> {"a.b": ["reason"]}."""
    flat: dict[str, list[str]] = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                name = key if not prefix else f"{prefix}.{key}"
                walk("body" if name == "non_field_errors" else name, inner)
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
        return error_response("invalid_request", exc.reason, status.HTTP_400_BAD_REQUEST, {"body": [exc.reason]})
    if isinstance(exc, exceptions.ValidationError):
        fields = _flatten(exc.detail)
        summary = "; ".join(f"{name}: {reasons[0]}" for name, reasons in fields.items())
        return error_response("invalid_request", summary, status.HTTP_400_BAD_REQUEST, fields)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
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
