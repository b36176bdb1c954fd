"""tenants.services.register_tenant: the control-plane transaction.

All or nothing: a failure in any operation leaves no row behind; a
serialization failure or deadlock is retried once; secrets are stored only
hashed or encrypted.
"""
from __future__ import annotations

import hashlib
import importlib

import psycopg.errors
import pytest
from django.apps import apps as django_apps
from django.db import OperationalError, connection

from billing.models import Subscription
from iam.models import ApiKey, Membership, Role, User
from matih.secrets import decrypt_json
from provisioning.models import JobStatus, ProvisioningJob
from tenants import services
from tenants.models import Tenant, TenantSettings, TenantStatus
from tests.registration_rows import NOTHING, control_plane_rows

# Real commits and rollbacks, not savepoints inside the test's transaction.
transactional = pytest.mark.django_db(transaction=True)

URL = "/api/v1/tenants"
SERVICE_PRINCIPAL = {
    "clientId": "3f2a9c1e-client",
    "clientSecret": "s3cr3t-Value~With.Symbols",
    "azureTenantId": "72f988bf-tenant",
    "subscriptionId": "b1c2d3e4-subscription",
}
# The seed's six control-plane operations, and the job row written in the same transaction.
OPERATIONS = [
    "create_tenant_record", "create_admin_user", "configure_billing", "set_default_roles",
    "initialize_settings", "create_api_key", "create_provisioning_job",
]




class InjectedFailure(Exception):
    pass


def serialization_failure() -> OperationalError:
    """What Django raises when PostgreSQL answers SQLSTATE 40001."""
    error = OperationalError("could not serialize access due to concurrent update")
    error.__cause__ = psycopg.errors.SerializationFailure("could not serialize access due to concurrent update")
    return error


def deadlock() -> OperationalError:
    error = OperationalError("deadlock detected")
    error.__cause__ = psycopg.errors.DeadlockDetected("deadlock detected")
    return error


def query_cancelled() -> OperationalError:
    error = OperationalError("canceling statement due to statement timeout")
    error.__cause__ = psycopg.errors.QueryCanceled("canceling statement due to statement timeout")
    return error


def fail_after(monkeypatch, operation: str, error_factory, times: int | None = None) -> list[str]:
    """Make `operation` do its writes and then raise, on its first `times` calls (None: always)."""
    original = getattr(services, operation)
    calls: list[str] = []

    def failing(**kwargs):
        result = original(**kwargs)
        calls.append(operation)
        if times is None or len(calls) <= times:
            raise error_factory()
        return result

    monkeypatch.setattr(services, operation, failing)
    return calls


@pytest.fixture
def seeded_plans(transactional_db):
    """A transactional test starts after another's flush: put back the plans the data migration seeds."""
    importlib.import_module("billing.migrations.0002_seed_plans").seed(django_apps, None)


@pytest.fixture(autouse=True)
def dispatched(monkeypatch) -> list:
    """Jobs handed to the data plane (after commit); kept off the shared broker."""
    jobs: list = []
    monkeypatch.setattr(services, "_dispatch", lambda job: jobs.append(job.id))
    return jobs


def register(**overrides):
    arguments = dict(name="Acme Corporation", slug="acme", tier="PROFESSIONAL", region="eastus",
                     admin_email="admin@acme.com")
    return services.register_tenant(**{**arguments, **overrides})


# --- all or nothing --------------------------------------------------------------------


@transactional
@pytest.mark.parametrize("operation", OPERATIONS)
def test_a_failing_operation_leaves_nothing_behind(seeded_plans, monkeypatch, dispatched, operation):
    fail_after(monkeypatch, operation, lambda: InjectedFailure(operation))

    with pytest.raises(InjectedFailure):
        register(tier="ENTERPRISE", service_principal=SERVICE_PRINCIPAL)

    assert control_plane_rows() == NOTHING
    assert dispatched == []


@transactional
@pytest.mark.parametrize("operation", OPERATIONS)
def test_a_failing_operation_answers_a_clean_error_and_the_slug_stays_free(
    seeded_plans, monkeypatch, operator_client, dispatched, operation
):
    body = {"name": "Acme", "slug": "acme", "tier": "FREE", "region": "eastus", "adminEmail": "admin@acme.com"}
    fail_after(monkeypatch, operation, lambda: InjectedFailure("injected: connection to IAM reset"))

    response = operator_client.post(URL, body, format="json", HTTP_IDEMPOTENCY_KEY="first-try")

    assert response.status_code == 500
    assert response.json()["error"] == "internal_error"
    assert "IAM" not in response.json()["detail"]  # internals stay in the log
    assert control_plane_rows() == NOTHING
    assert dispatched == []

    monkeypatch.undo()
    monkeypatch.setattr(services, "_dispatch", lambda job: dispatched.append(job.id))
    retried = operator_client.post(URL, body, format="json", HTTP_IDEMPOTENCY_KEY="first-try")
    assert retried.status_code == 201
    assert control_plane_rows()["tenants"] == 1


@transactional
@pytest.mark.parametrize("error_factory", [serialization_failure, deadlock], ids=["40001", "40P01"])
def test_a_serialization_failure_or_deadlock_is_retried_once(
    seeded_plans, monkeypatch, dispatched, error_factory
):
    calls = fail_after(monkeypatch, "create_api_key", error_factory, times=1)

    registration = register()

    assert len(calls) == 2
    rows = control_plane_rows()
    assert rows["tenants"] == rows["users"] == rows["tenantKeys"] == rows["jobs"] == rows["subscriptions"] == 1
    assert rows["roles"] == 3
    assert Tenant.objects.get().id == registration.tenant.id
    assert dispatched == [registration.job.id]


@transactional
def test_a_second_serialization_failure_fails_cleanly(seeded_plans, monkeypatch, dispatched):
    calls = fail_after(monkeypatch, "initialize_settings", serialization_failure)

    with pytest.raises(OperationalError):
        register()

    assert len(calls) == 2
    assert control_plane_rows() == NOTHING
    assert dispatched == []


@transactional
def test_a_second_serialization_failure_over_http_is_503_try_again(
    seeded_plans, monkeypatch, operator_client
):
    fail_after(monkeypatch, "configure_billing", serialization_failure)
    body = {"name": "Acme", "slug": "acme", "tier": "FREE", "region": "eastus", "adminEmail": "admin@acme.com"}

    response = operator_client.post(URL, body, format="json")

    assert response.status_code == 503
    assert response.json()["error"] == "unavailable"
    assert int(response["Retry-After"]) >= 1
    assert control_plane_rows() == NOTHING


@transactional
def test_other_database_errors_are_not_retried(seeded_plans, monkeypatch):
    calls = fail_after(monkeypatch, "create_admin_user", query_cancelled)

    with pytest.raises(OperationalError):
        register()

    assert len(calls) == 1
    assert control_plane_rows() == NOTHING


# --- what a registration writes ---------------------------------------------------------


@pytest.mark.django_db
def test_registration_writes_the_six_records_and_a_pending_job():
    registration = register(settings={"timezone": "Europe/Paris"})

    tenant = Tenant.objects.get(id=registration.tenant.id)
    assert tenant.status == TenantStatus.PROVISIONING
    assert tenant.provisioning_started_at is not None
    admin = User.objects.get(email="admin@acme.com")
    roles = {role.name: set(role.permissions) for role in Role.objects.filter(tenant=tenant)}
    assert set(roles) == {"Admin", "Analyst", "Viewer"}
    assert roles["Viewer"] < roles["Analyst"] < roles["Admin"]
    assert Membership.objects.get(user=admin, tenant=tenant).role.name == "Admin"
    assert Subscription.objects.get(tenant=tenant).plan.tier == "PROFESSIONAL"
    values = TenantSettings.objects.get(tenant=tenant).values
    assert values["timezone"] == "Europe/Paris"  # the caller's override
    assert "dataRetentionDays" in values  # the tier's defaults
    key = ApiKey.objects.get(tenant=tenant)
    assert key.user == admin and key.revoked_at is None
    job = ProvisioningJob.objects.get(tenant=tenant)
    assert job.id == registration.job.id
    assert job.status == JobStatus.PENDING
    assert job.tier == "PROFESSIONAL"


@pytest.mark.django_db
def test_the_job_is_dispatched_only_when_the_transaction_commits(django_capture_on_commit_callbacks, dispatched):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        registration = register()

    assert dispatched == []
    for callback in callbacks:
        callback()
    assert dispatched == [registration.job.id]


@pytest.mark.django_db
def test_the_admin_user_has_an_unusable_password():
    register()

    admin = User.objects.get(email="admin@acme.com")
    assert not admin.has_usable_password()
    assert not admin.is_staff and not admin.is_superuser


@pytest.mark.django_db
def test_one_person_may_administer_several_tenants():
    register(slug="acme-eu")
    register(slug="acme-us", admin_email="ADMIN@acme.com".lower())

    admin = User.objects.get(email="admin@acme.com")
    assert sorted(admin.memberships.values_list("tenant__slug", flat=True)) == ["acme-eu", "acme-us"]
    assert ApiKey.objects.filter(user=admin).count() == 2


# --- secrets at rest ---------------------------------------------------------------------


def database_text() -> str:
    """Every row of every table, as text."""
    chunks = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f'SELECT t::text FROM "{table}" t')
            chunks.extend(row[0] for row in cursor.fetchall())
    return "\n".join(chunks)


@pytest.mark.django_db
def test_keys_are_stored_only_as_a_hash_with_a_visible_prefix(operator_client):
    body = {"name": "Acme", "slug": "acme", "tier": "FREE", "region": "eastus", "adminEmail": "admin@acme.com"}
    raw_key = operator_client.post(URL, body, format="json", HTTP_IDEMPOTENCY_KEY="k").json()["adminApiKey"]

    key = ApiKey.objects.get(tenant__slug="acme")
    assert key.key_hash == hashlib.sha256(raw_key.encode()).hexdigest()
    assert raw_key.startswith(f"mk_{key.prefix}")
    secret_part = raw_key[len(f"mk_{key.prefix}_"):]
    assert len(secret_part) >= 43  # 32 random bytes, base64url
    assert secret_part not in database_text()


@pytest.mark.django_db
def test_the_service_principal_is_stored_encrypted(operator_client):
    body = {"name": "Acme", "slug": "acme", "tier": "ENTERPRISE", "region": "eastus", "adminEmail": "admin@acme.com",
            "servicePrincipal": SERVICE_PRINCIPAL}

    assert operator_client.post(URL, body, format="json", HTTP_IDEMPOTENCY_KEY="k").status_code == 201

    assert SERVICE_PRINCIPAL["clientSecret"] not in database_text()
    tenant = Tenant.objects.get(slug="acme")
    assert decrypt_json(tenant.service_principal_encrypted) == SERVICE_PRINCIPAL
