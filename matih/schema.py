"""The OpenAPI schema's conventions, applied to every DRF view without work in the view.

- Every operation documents the error answers it can give, in the one error shape
  (matih.api, `Error` in the schema): 400, 401, 403 and 404 everywhere; 409 on
  methods that change something; 413 and 415 where there is a request body; 429
  where the view has throttles.
- A request body of a StrictSerializer (unknown fields refused) is
  `additionalProperties: false`; a string that may not be blank has `minLength: 1`,
  and if the serializer trims it, a pattern (NOT_ONLY_SPACES); a nested list
  serializer's max_length/min_length are maxItems/minItems.
- Responses keep drf-spectacular's mapping: a field that can be null says
  `allow_null=True` in its serializer, and the schema says `nullable`.

A view that is not DRF's (the SSE stream) adds itself with a postprocessing hook
(SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"]) and may use `error_responses()`.
"""
from __future__ import annotations

from django.core.validators import RegexValidator
from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.utils import PolymorphicProxySerializer
from rest_framework import serializers

from matih.serializers import StrictSerializer

ERROR_COMPONENT = "Error"
ERROR_DESCRIPTIONS = {
    400: "The request is malformed or a value is refused; `fields` names each field and why.",
    401: "No API key, or one that is unknown or revoked (`Authorization: Bearer <api key>`).",
    403: "The key may not do this.",
    404: "No such resource, or one the key may not see.",
    409: "The resource is not in a state that allows this.",
    413: "The body is larger than MATIH_MAX_BODY_BYTES.",
    415: "The body is not `application/json`.",
    429: "Too many requests; `Retry-After` says when to try again.",
}
# "Not only spaces", as the server trims: Python's str.strip() also strips \x1c-\x1f and \x85, which
# JSON Schema's (ECMA-262) \s does not match.
NOT_ONLY_SPACES = r"[^\s\x1c-\x1f\x85]"
BODY_METHODS = {"POST", "PUT", "PATCH"}
CHANGING_METHODS = BODY_METHODS | {"DELETE"}


class ErrorSerializer(serializers.Serializer):
    """Every error answer: a code, a sentence, and for refused values the fields and their reasons."""

    error = serializers.CharField(help_text="A stable code: invalid_request, unauthenticated, not_found, ...")
    detail = serializers.CharField(help_text="What went wrong, for a person.")
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()), required=False,
        help_text='Only for refused values: {"settings.notifications.webhooks[0].url": ["<reason>"]}.',
    )


def error_response(code: int, ref: dict) -> dict:
    return {"description": ERROR_DESCRIPTIONS[code], "content": {"application/json": {"schema": ref}}}


def error_responses(codes, ref: dict | None = None) -> dict[str, dict]:
    ref = ref or {"$ref": f"#/components/schemas/{ERROR_COMPONENT}"}
    return {str(code): error_response(code, ref) for code in codes}


class AutoSchema(SpectacularAutoSchema):
    def get_operation(self, path, path_regex, path_prefix, method, registry):
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None:
            return None
        ref = self.resolve_serializer(ErrorSerializer, "response").ref
        for code, answer in error_responses(self._error_codes(operation), ref).items():
            operation["responses"].setdefault(code, answer)
        return operation

    def _error_codes(self, operation: dict) -> list[int]:
        codes = [400, 401, 403, 404]
        if self.method in CHANGING_METHODS:
            codes.append(409)
        if "requestBody" in operation:
            codes += [413, 415]
        if getattr(self.view, "throttle_classes", None):
            codes.append(429)
        return codes

    def _get_request_for_media_type(self, serializer, direction="request"):
        schema, required = super()._get_request_for_media_type(serializer, direction)
        if isinstance(serializer, PolymorphicProxySerializer):  # each variant has required fields
            required = True
        return schema, required

    def _map_serializer_field(self, field, direction, bypass_extensions=False):
        schema = super()._map_serializer_field(field, direction, bypass_extensions)
        if isinstance(field, serializers.ListSerializer) and schema.get("type") == "array":
            if field.max_length is not None:
                schema["maxItems"] = field.max_length
            if field.min_length is not None:
                schema["minItems"] = field.min_length
        if direction != "request" or not isinstance(field, serializers.CharField) or schema.get("type") != "string":
            return schema
        if not field.allow_blank:
            schema.setdefault("minLength", 1)
            has_pattern = "pattern" in schema or any(isinstance(v, RegexValidator) for v in field.validators)
            if field.trim_whitespace and not has_pattern:
                schema["pattern"] = NOT_ONLY_SPACES
        return schema

    def _map_basic_serializer(self, serializer, direction):
        schema = super()._map_basic_serializer(serializer, direction)
        strict = isinstance(serializer, StrictSerializer) or (
            isinstance(serializer, type) and issubclass(serializer, StrictSerializer))
        if direction == "request" and strict:
            schema["additionalProperties"] = False
        return schema
