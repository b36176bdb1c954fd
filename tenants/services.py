"""The control-plane tier: tenant registration in one transaction."""
from __future__ import annotations

import hashlib
import json
import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Callable

from django.conf import settings as django_settings
from django.db import IntegrityError, OperationalError, transaction
from django.utils import timezone

from billing.services import subscription_create
from iam.models import Role
from iam.services import api_key_create, default_roles_create, iam_client
from matih.secrets import decrypt_json, encrypt_json
from provisioning.models import ProvisioningJob
from tenants.models import IdempotencyRecord, Tenant, TenantSettings, TenantStatus

log = logging.getLogger("matih.registration")

# SQLSTATEs worth one immediate retry: serialization_failure, deadlock_detected.
RETRYABLE_SQLSTATES = {"40001", "40P01"}

DEFAULT_SETTINGS: dict[str, dict] = {
    "FREE": {"dataRetentionDays": 30, "maxConcurrentQueries": 2, "queryTimeoutSeconds": 60},
    "PROFESSIONAL": {"dataRetentionDays": 365, "maxConcurrentQueries": 10, "queryTimeoutSeconds": 300},
    "ENTERPRISE": {"dataRetentionDays": 2555, "maxConcurrentQueries": 50, "queryTimeoutSeconds": 1800},
}
COMMON_SETTINGS = {"timezone": "UTC", "locale": "en-US", "notifications": {"email": True, "webhooks": []}}


class RegistrationError(Exception):
    code = "registration_error"


class SlugTaken(RegistrationError):
    code = "slug_taken"


class IdempotencyConflict(RegistrationError):
    code = "idempotency_key_reused"


@dataclass
class Idempotency:
    principal: str
    key: str
    request_hash: str

    @staticmethod
    def for_request(*, principal: str, key: str, body: dict) -> "Idempotency":
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
        return Idempotency(principal=principal, key=key, request_hash=hashlib.sha256(canonical.encode()).hexdigest())


@dataclass
class Registration:
    tenant: Tenant | None
    job: ProvisioningJob | None
    admin_api_key: str | None
    timings_ms: dict[str, float] = field(default_factory=dict)
    replayed_body: dict | None = None


class _Stopwatch:
    def __init__(self) -> None:
        self.timings_ms: dict[str, float] = {}

    @contextmanager
    def measure(self, operation: str):
        started = time.perf_counter()
        try:
            yield
        finally:
            self.timings_ms[operation] = round((time.perf_counter() - started) * 1000, 3)


def _sqlstate(exc: BaseException) -> str | None:
    cause = exc.__cause__
    return getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)


def _constraint(exc: IntegrityError) -> str | None:
    diag = getattr(exc.__cause__, "diag", None)
    return getattr(diag, "constraint_name", None)


IDEMPOTENCY_RETENTION = timedelta(hours=24)


def purge_idempotency_records(*, now=None) -> int:
    """Forget the answers older than IDEMPOTENCY_RETENTION (they hold admin keys, encrypted)."""
    cutoff = (now or timezone.now()) - IDEMPOTENCY_RETENTION
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=cutoff).delete()
    return deleted


def replayed_registration(idempotency: Idempotency) -> Registration | None:
    """The stored answer for this key, or None; a key reused with another body is a conflict."""
    record = IdempotencyRecord.objects.filter(principal=idempotency.principal, key=idempotency.key).first()
    if record is None:
        return None
    if record.request_hash != idempotency.request_hash:
        raise IdempotencyConflict("This Idempotency-Key was used with a different request body.")
    return Registration(tenant=None, job=None, admin_api_key=None, replayed_body=decrypt_json(record.response_body_encrypted))


def register_tenant(
    *,
    name: str,
    slug: str,
    tier: str,
    region: str,
    admin_email: str,
    settings: dict | None = None,
    service_principal: dict | None = None,
    simulate: dict | None = None,
    initiated_by=None,
    idempotency: Idempotency | None = None,
    render: Callable[[Registration], dict] | None = None,
) -> Registration:
    """Run the six control-plane operations and create the PENDING job, atomically.

    1. With an idempotency key, answer a stored registration from the record.
    2. Run the transaction; on a serialization failure or a deadlock run it once more.
    3. On a unique violation with an idempotency key, a concurrent twin may have
       committed first (it took the slug, or the key): answer with its record.
       Otherwise a unique violation on the slug is SlugTaken.
    The job is dispatched to the data plane when the transaction commits.
    """
    if idempotency is not None:
        replay = replayed_registration(idempotency)
        if replay is not None:
            return replay
    arguments = dict(
        name=name, slug=slug, tier=tier, region=region, admin_email=admin_email, settings=settings or {},
        service_principal=service_principal, simulate=simulate, initiated_by=initiated_by,
        idempotency=idempotency, render=render,
    )
    for attempt in (1, 2):
        try:
            return _register_once(**arguments)
        except OperationalError as exc:
            if attempt == 2 or _sqlstate(exc) not in RETRYABLE_SQLSTATES:
                raise
            log.warning("registration retried after %s", _sqlstate(exc), extra={"slug": slug})
        except IntegrityError as exc:
            constraint = _constraint(exc) or ""
            if idempotency is not None:
                replay = replayed_registration(idempotency)
                if replay is not None:
                    return replay
            if "slug" in constraint:
                raise SlugTaken(f"The slug '{slug}' is taken.") from None
            raise
    raise AssertionError("unreachable")


def _register_once(
    *, name, slug, tier, region, admin_email, settings, service_principal, simulate, initiated_by, idempotency, render
) -> Registration:
    clock = _Stopwatch()
    started = time.perf_counter()
    with transaction.atomic():
        with clock.measure("createTenantRecord"):
            tenant = create_tenant_record(
                name=name, slug=slug, tier=tier, region=region, admin_email=admin_email,
                service_principal=service_principal,
            )
        with clock.measure("setDefaultRoles"):
            roles = set_default_roles(tenant=tenant)
        with clock.measure("createAdminUser"):
            admin = create_admin_user(tenant=tenant, email=admin_email, role=roles[Role.ADMIN])
        with clock.measure("configureBilling"):
            configure_billing(tenant=tenant)
        with clock.measure("initializeSettings"):
            initialize_settings(tenant=tenant, overrides=settings)
        with clock.measure("createApiKey"):
            raw_key = create_api_key(tenant=tenant, user=admin)
        with clock.measure("createProvisioningJob"):
            job = create_provisioning_job(tenant=tenant, initiated_by=initiated_by or admin, simulate=simulate)
        registration = Registration(tenant=tenant, job=job, admin_api_key=raw_key, timings_ms=clock.timings_ms)
        if idempotency is not None and render is not None:
            with clock.measure("recordIdempotencyKey"):
                IdempotencyRecord.objects.create(
                    principal=idempotency.principal, key=idempotency.key, request_hash=idempotency.request_hash,
                    response_status=201, response_body_encrypted=encrypt_json(render(registration)),
                )
        transaction.on_commit(lambda: _dispatch(job))
    log.info(
        "tenant registered",
        extra={
            "tenantId": str(tenant.id), "slug": slug, "tier": tier, "jobId": str(job.id),
            "timingsMs": clock.timings_ms, "totalMs": round((time.perf_counter() - started) * 1000, 3),
        },
    )
    return registration


def _dispatch(job: ProvisioningJob) -> None:
    # Imported late: the data plane is optional for the control plane. A failed
    # publish loses nothing: the sweeper finds PENDING jobs never dispatched.
    try:
        from provisioning.engine.canvas import dispatch_job
        from provisioning.engine.plans import plan_for
    except ImportError:
        return
    try:
        dispatch_job(job.id, plan_for(job.tier))
    except Exception:  # the broker may be down; the job row is the truth
        log.warning("dispatch failed; the sweeper will pick the job up", extra={"jobId": str(job.id)}, exc_info=True)


# --- The six operations (each called inside the registration transaction) ------------


def create_tenant_record(*, name, slug, tier, region, admin_email, service_principal) -> Tenant:
    return Tenant.objects.create(
        name=name, slug=slug, tier=tier, region=region, admin_email=admin_email,
        status=TenantStatus.PROVISIONING, provisioning_started_at=timezone.now(),
        service_principal_encrypted=encrypt_json(service_principal) if service_principal else "",
    )


def set_default_roles(*, tenant: Tenant) -> dict[str, Role]:
    return default_roles_create(tenant=tenant)


def create_admin_user(*, tenant: Tenant, email: str, role: Role):
    return iam_client().create_admin_user(tenant=tenant, email=email, role=role)


def configure_billing(*, tenant: Tenant):
    return subscription_create(tenant=tenant, tier=tenant.tier)


def initialize_settings(*, tenant: Tenant, overrides: dict) -> TenantSettings:
    values = {**COMMON_SETTINGS, **DEFAULT_SETTINGS[tenant.tier], **overrides}
    return TenantSettings.objects.create(tenant=tenant, values=values)


def create_api_key(*, tenant: Tenant, user) -> str:
    return api_key_create(user=user, tenant=tenant, name="admin (registration)").raw


def create_provisioning_job(*, tenant: Tenant, initiated_by, simulate: dict | None) -> ProvisioningJob:
    context = {"slug": tenant.slug, "region": tenant.region}
    if simulate:
        context["simulate"] = simulate
    return ProvisioningJob.objects.create(
        tenant=tenant, tier=tenant.tier, initiated_by=initiated_by, context=context,
        max_retries=django_settings.MATIH_MAX_RETRIES,
    )
