"""Writes of the IAM concern: users, roles, memberships and API keys."""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from django.db import connection, models, transaction
from django.db.models.constants import OnConflict
from django.db.models.sql import InsertQuery
from django.utils import timezone

from iam.models import ApiKey, Membership, Role, User
from iam.signals import keys_revoked
from iam.selectors import is_operator_key

KEY_PREFIX = "mk_"

# The default roles every tenant gets, with their permission sets.
DEFAULT_ROLES: dict[str, list[str]] = {
    Role.ADMIN: [
        "tenant.read", "tenant.update", "users.manage", "roles.manage", "keys.manage",
        "billing.read", "billing.manage", "provisioning.read", "provisioning.manage",
        "data.read", "data.query", "data.manage",
    ],
    Role.ANALYST: ["tenant.read", "provisioning.read", "data.read", "data.query"],
    Role.VIEWER: ["tenant.read", "provisioning.read", "data.read"],
}


def hash_key(raw_key: str) -> str:
    # A key carries 256 random bits, so a fast hash is enough: no dictionary to fear.
    return hashlib.sha256(raw_key.encode()).hexdigest()


@dataclass(frozen=True)
class IssuedKey:
    api_key: ApiKey
    raw: str


def api_key_create(*, user: User, tenant=None, name: str = "default") -> IssuedKey:
    """Make a key; the raw value is returned here once and never stored."""
    prefix = secrets.token_hex(4)
    raw = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    api_key = ApiKey.objects.create(user=user, tenant=tenant, name=name, prefix=prefix, key_hash=hash_key(raw))
    return IssuedKey(api_key=api_key, raw=raw)


def api_key_revoke(*, api_key: ApiKey) -> None:
    """Revoke a key: every authentication reads revoked_at, so it is refused from the next request on.

    The one way keys are revoked (the API, the admin): a cache of key lookups, if one
    is ever added to iam.auth, must be invalidated here.
    """
    if ApiKey.objects.filter(id=api_key.id, revoked_at__isnull=True).update(revoked_at=timezone.now()):
        transaction.on_commit(lambda: keys_revoked.send(sender=ApiKey, key_ids=[api_key.id]))


class KeyRefused(Exception):
    """The caller may not manage this tenant's keys."""


class NoKeyOwner(Exception):
    """The tenant has no active administrator to own a key an operator asks for."""


KEYS_MANAGE = "keys.manage"


def tenant_key_issue(*, tenant, caller: ApiKey, name: str) -> IssuedKey:
    """Issue a key of `tenant` for someone who may manage its keys.

    A tenant key needs the keys.manage permission in the tenant (its user's role), and
    the new key is that user's: no one gets a key with more rights than their own. An
    operator's new key belongs to the tenant's first administrator.
    """
    if is_operator_key(caller):
        owner = (Membership.objects.filter(tenant=tenant, role__name=Role.ADMIN, user__is_active=True)
                 .order_by("created_at").select_related("user").first())
        if owner is None:
            raise NoKeyOwner("The tenant has no active administrator to own a key.")
        return api_key_create(user=owner.user, tenant=tenant, name=name)
    if not may_manage_keys(caller=caller, tenant=tenant):
        raise KeyRefused(f"This key's user lacks the {KEYS_MANAGE} permission in the tenant.")
    return api_key_create(user=caller.user, tenant=tenant, name=name)


def may_manage_keys(*, caller: ApiKey, tenant) -> bool:
    if is_operator_key(caller):
        return True
    if caller.tenant_id != tenant.id:
        return False
    membership = Membership.objects.filter(user_id=caller.user_id, tenant=tenant).select_related("role").first()
    return membership is not None and KEYS_MANAGE in (membership.role.permissions or [])


LAST_USED_RESOLUTION = timedelta(seconds=60)


def api_key_touch(*, api_key: ApiKey) -> None:
    """Record use, at most once a minute per key so reads do not become writes."""
    now = timezone.now()
    if api_key.last_used_at and now - api_key.last_used_at < LAST_USED_RESOLUTION:
        return
    ApiKey.objects.filter(id=api_key.id).update(last_used_at=now)
    api_key.last_used_at = now


def default_roles_create(*, tenant) -> dict[str, Role]:
    roles = Role.objects.bulk_create(
        [Role(tenant=tenant, name=name, permissions=perms) for name, perms in DEFAULT_ROLES.items()]
    )
    return {role.name: role for role in roles}


def operator_get_or_create(*, email: str) -> User:
    user, created = User.objects.get_or_create(
        email=email, defaults={"username": email, "is_staff": True, "is_superuser": True}
    )
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    elif not user.is_staff:
        user.is_staff = True
        user.save(update_fields=["is_staff"])
    return user


class IamServiceClient(Protocol):
    """The IAM service the control plane calls to create a tenant's first admin.

    MATIH's IAM is a separate service; here it is an interface with an
    in-process implementation on the same database (and so the same transaction).
    """

    def create_admin_user(self, *, tenant, email: str, role: Role) -> User: ...


def _insert_unless_conflicting(obj: models.Model) -> bool:
    """INSERT the unsaved `obj` with ON CONFLICT DO NOTHING; whether the row went in.

    The ORM's own insert (Django renders the SQL and prepares the values, as save()
    does), keeping the cursor's row count, which save() and bulk_create() do not return.
    """
    query = InsertQuery(type(obj), on_conflict=OnConflict.IGNORE)
    query.insert_values(type(obj)._meta.local_concrete_fields, [obj])
    inserted = 0
    with connection.cursor() as cursor:
        for sql, params in query.get_compiler(using=connection.alias).as_sql():
            cursor.execute(sql, params)
            inserted += cursor.rowcount
    if inserted:
        obj._state.adding, obj._state.db = False, connection.alias
    return inserted == 1


class InProcessIamServiceClient:
    def create_admin_user(self, *, tenant, email: str, role: Role) -> User:
        # No password hash on the hot path: an unusable password, an invitation later.
        # The same person may administer several tenants: the INSERT does nothing on a
        # unique conflict (an existing user, or a concurrent registration with the same
        # email: the INSERT waits for it to commit), and the existing user is taken
        # instead. A new email, the usual case, costs one statement and no savepoint.
        user = User(email=email, username=email)
        user.set_unusable_password()
        if not _insert_unless_conflicting(user):
            user = User.objects.get(email=email)
        Membership.objects.create(user=user, tenant=tenant, role=role)
        return user


def iam_client() -> IamServiceClient:
    return InProcessIamServiceClient()
