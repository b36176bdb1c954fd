"""Strict input fields and serializers, shared by every app's API: no coercion, no unknown fields."""
from __future__ import annotations

from rest_framework import serializers


class StrictCharField(serializers.CharField):
    """A CharField that refuses numbers, booleans and objects instead of coercing them."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictEmailField(serializers.EmailField):
    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data).lower()


def one_of(values) -> dict:
    """A ChoiceField's error for a value it does not know, listing what it knows."""
    return {"invalid_choice": f"Must be one of {', '.join(values)}."}


class StrictSerializer(serializers.Serializer):
    """Rejects fields it does not know, naming each."""

    def validate_empty_values(self, data):
        if data is None and self.parent is None:  # a body of `null`
            raise serializers.ValidationError({"non_field_errors": ["Expected a JSON object."]})
        return super().validate_empty_values(data)

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            raise serializers.ValidationError({"non_field_errors": ["Expected a JSON object."]})
        errors = {name: ["Unknown field."] for name in sorted(set(data) - set(self.fields))}
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            errors = {**exc.detail, **errors}
        if errors:
            raise serializers.ValidationError(errors)
        return value
