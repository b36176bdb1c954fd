"""The bearer key lookup (iam.auth), rendered once from the models, loads what the ORM loads."""
from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from iam.auth import api_key_from_raw
from iam.models import ApiKey, User
from iam.services import api_key_create, hash_key, operator_get_or_create


@pytest.mark.django_db
def test_key_lookup_loads_the_key_and_its_user_as_the_orm_does():
    issued = api_key_create(user=operator_get_or_create(email="lookup@matih.test"), name="lookup")
    expected = ApiKey.objects.select_related("user").get(key_hash=hash_key(issued.raw))

    with CaptureQueriesContext(connection) as queries:
        found = api_key_from_raw(issued.raw)
        user = found.user

    assert len(queries) == 2  # the lookup, and the first use's last_used_at
    for field in ApiKey._meta.concrete_fields:
        assert getattr(found, field.attname) == getattr(expected, field.attname) or field.name == "last_used_at"
    for field in User._meta.concrete_fields:
        assert getattr(user, field.attname) == getattr(expected.user, field.attname)
    assert not found._state.adding and not user._state.adding
    found.name = "renamed"
    found.save(update_fields=["name"])  # a loaded instance saves as an update, not an insert
    assert ApiKey.objects.get(id=found.id).name == "renamed"
    with CaptureQueriesContext(connection) as again:
        assert api_key_from_raw(issued.raw).user.email == "lookup@matih.test"
    assert len(again) == 1  # used within the minute: no second write


@pytest.mark.django_db
def test_key_lookup_finds_nothing_for_an_unknown_key():
    assert api_key_from_raw("mk_00000000_" + "x" * 43) is None
