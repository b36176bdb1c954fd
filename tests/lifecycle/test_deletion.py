"""Deletion with a grace period, restore, DELETED, slug reuse; and the lifecycle API's refusals.
Real worker process and sweeper; the clock of the grace period is the sweep's `now`."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from deploy.models import SimulatedResource
from iam.models import ApiKey, User
from provisioning.engine.sweeper import sweep
from provisioning.models import ProvisioningEvent, ProvisioningJob, TenantResource
from tenants.models import Tenant
from tests.harness import wait_for
from tests.dataplane.helpers import job_of, register, terminal

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/api/v1/tenants"


def _ended(tenant_id) -> ProvisioningJob:
    return wait_for(lambda: terminal(tenant_id), timeout=60, message="the tenant's job to end")


def _tenant(tenant_id) -> Tenant:
    return Tenant.objects.get(id=tenant_id)


def _provisioned(client, tier: str = "FREE", **kwargs) -> dict:
    tenant = register(client, tier=tier, **kwargs)
    assert _ended(tenant["id"]).status == "COMPLETED"
    return tenant


def _workloads(slug: str) -> dict:
    return {r.name: r.data.get("replicas") for r in SimulatedResource.objects.filter(owner=slug, kind="Deployment")}


def test_deletion_waits_for_its_grace_period_and_a_restore_brings_the_tenant_back(dataplane, operator_client):
    tenant = _provisioned(operator_client, tier="PROFESSIONAL")
    tid, slug = tenant["id"], tenant["slug"]
    before = timezone.now()
    answer = operator_client.delete(f"{URL}/{tid}", {"graceSeconds": 3600}, format="json")
    assert answer.status_code == 202, answer.content
    body = answer.json()
    assert body["status"] == "PENDING_DELETION"
    scheduled = timezone.datetime.fromisoformat(body["deletionScheduledAt"].replace("Z", "+00:00"))
    assert timedelta(seconds=3599) <= scheduled - before <= timedelta(seconds=3605)
    suspension = _ended(tid)
    assert (suspension.kind, suspension.status) == ("SUSPEND", "COMPLETED"), "an ACTIVE tenant is suspended at once"
    assert set(_workloads(slug).values()) == {0}
    assert _tenant(tid).status == "PENDING_DELETION" and _tenant(tid).suspended_at is not None

    assert sweep(now=before + timedelta(minutes=30)).deprovisioning == [], "the grace period is not over"
    assert _tenant(tid).status == "PENDING_DELETION"

    restored = operator_client.post(f"{URL}/{tid}/restore")
    assert restored.status_code == 202, restored.content
    assert restored.json()["status"] == "SUSPENDED" and restored.json()["deletionScheduledAt"] is None
    activation = _ended(tid)
    assert (activation.kind, activation.status) == ("ACTIVATE", "COMPLETED")
    assert _tenant(tid).status == "ACTIVE", "back to what it was"
    assert min(_workloads(slug).values()) > 0


def test_after_its_grace_period_a_tenant_is_deprovisioned_deleted_and_its_slug_is_free(dataplane, operator_client):
    from django.conf import settings

    tenant = _provisioned(operator_client, tier="FREE")
    tid, slug = tenant["id"], tenant["slug"]
    before = timezone.now()
    answer = operator_client.delete(f"{URL}/{tid}")  # the default grace: MATIH_DELETION_GRACE
    assert answer.status_code == 202, answer.content
    scheduled = timezone.datetime.fromisoformat(answer.json()["deletionScheduledAt"].replace("Z", "+00:00"))
    assert abs((scheduled - before).total_seconds() - settings.MATIH_DELETION_GRACE) < 5
    _ended(tid)
    assert sweep(now=before + timedelta(days=6)).deprovisioning == []
    started = sweep(now=scheduled + timedelta(seconds=1)).deprovisioning
    assert len(started) == 1
    job = wait_for(lambda: (lambda j: j if j.kind == "DEPROVISION" and j.is_terminal else None)(job_of(tid)),
                   timeout=60, message="the deprovisioning to end")
    assert job.status == "COMPLETED", job.error_message
    record = _tenant(tid)
    assert record.status == "DELETED" and record.deleted_at is not None
    assert record.name == tenant["name"] and record.admin_email == f"deleted+{tid}@invalid"
    assert not SimulatedResource.objects.filter(owner=slug).exists(), "nothing of the tenant is left"
    assert not TenantResource.objects.filter(tenant_id=tid, removed_at__isnull=True).exists()
    assert operator_client.get(f"{URL}/{tid}/resources").json() == {"results": []}
    export = ProvisioningEvent.objects.filter(job=job, kind="step.succeeded", step="EXPORT_TENANT_DATA").exists()
    assert export, "the data was exported first"
    kinds = list(ProvisioningJob.objects.filter(tenant_id=tid).order_by("created_at").values_list("kind", flat=True))
    assert kinds == ["PROVISION", "SUSPEND", "DEPROVISION"], "the record, its jobs and events are kept"
    assert operator_client.get(f"{URL}/{tid}").json()["status"] == "DELETED"
    assert not ApiKey.objects.filter(tenant_id=tid, revoked_at__isnull=True).exists(), "every key revoked"
    admin = User.objects.get(email=f"deleted+{User.objects.get(memberships__tenant_id=tid).id}@invalid")
    assert not admin.is_active

    again = register(operator_client, tier="FREE", slug=slug)
    assert again["slug"] == slug and again["id"] != tid, "the slug is free for a new tenant"
    assert operator_client.post(f"{URL}/{tid}/restore").status_code == 409


def test_a_deleted_tenants_key_is_refused_and_a_user_of_another_tenant_keeps_working(dataplane, operator_client):
    shared_admin = "shared-admin@example.com"
    first = register(operator_client, tier="FREE")
    second = register(operator_client, tier="FREE")
    _ended(first["id"]), _ended(second["id"])
    User.objects.filter(memberships__tenant_id=second["id"]).update(email=shared_admin, username=shared_admin)
    from iam.models import Membership

    user = User.objects.get(email=shared_admin)
    Membership.objects.create(user=user, tenant_id=first["id"],
                              role=Membership.objects.get(tenant_id=second["id"]).role)
    key = first["adminApiKey"]
    own = operator_client.__class__()
    own.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert own.get(f"{URL}/{first['id']}").status_code == 200
    assert operator_client.delete(f"{URL}/{first['id']}", {"graceSeconds": 0}, format="json").status_code == 202
    _ended(first["id"])
    sweep()
    wait_for(lambda: _tenant(first["id"]).status == "DELETED", timeout=60, message="DELETED")
    refused = own.get(f"{URL}/{first['id']}")
    assert refused.status_code == 401 and refused.json()["error"] == "unauthenticated"
    user.refresh_from_db()
    assert user.is_active and user.email == shared_admin, "an admin of a live tenant is not deactivated"
    other = operator_client.__class__()
    other.credentials(HTTP_AUTHORIZATION=f"Bearer {second['adminApiKey']}")
    assert other.get(f"{URL}/{second['id']}").status_code == 200


# --- refusals ---------------------------------------------------------------------------------------


def _client_with(key: str):
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def test_the_lifecycle_refuses_what_the_tenant_cannot_do_now_naming_its_status(dataplane, operator_client):
    busy = register(operator_client, tier="PROFESSIONAL", simulate={"timeScale": 0.02})
    answer = operator_client.delete(f"{URL}/{busy['id']}")
    assert answer.status_code == 409 and answer.json()["error"] == "invalid_state"
    assert "PROVISIONING" in answer.json()["detail"]
    answer = operator_client.post(f"{URL}/{busy['id']}/upgrade", {"newTier": "ENTERPRISE",
                                  "servicePrincipal": {"clientId": "a", "clientSecret": "b", "azureTenantId": "c",
                                                       "subscriptionId": "d"}}, format="json")
    assert answer.status_code == 409 and "PROVISIONING" in answer.json()["detail"]
    assert operator_client.post(f"{URL}/{busy['id']}/activate").json()["error"] == "invalid_state"
    _ended(busy["id"])

    tid = busy["id"]
    assert operator_client.post(f"{URL}/{tid}/upgrade", {"newTier": "PROFESSIONAL"}, format="json").json()[
        "fields"] == {"newTier": ["The tenant is already PROFESSIONAL."]}
    unknown = operator_client.post(f"{URL}/{tid}/upgrade", {"newTier": "PLATINUM"}, format="json")
    assert unknown.status_code == 400 and "newTier" in unknown.json()["fields"]
    missing = operator_client.post(f"{URL}/{tid}/upgrade", {"newTier": "ENTERPRISE"}, format="json")
    assert missing.status_code == 400 and "servicePrincipal" in missing.json()["fields"]
    principal = {"clientId": "a", "clientSecret": "b", "azureTenantId": "c", "subscriptionId": "d"}
    below = operator_client.post(f"{URL}/{tid}/upgrade", {"newTier": "FREE", "servicePrincipal": principal},
                                 format="json")
    assert below.status_code == 400 and below.json()["fields"]["servicePrincipal"] == ["ENTERPRISE only."]
    assert job_of(tid).kind == "PROVISION", "nothing was started"

    tenant_key = _client_with(busy["adminApiKey"])
    for action in ("suspend", "activate", "restore"):
        forbidden = tenant_key.post(f"{URL}/{tid}/{action}")
        assert forbidden.status_code == 403 and forbidden.json()["error"] == "forbidden", action
    assert tenant_key.delete(f"{URL}/{tid}", {"graceSeconds": 0}, format="json").status_code == 400, \
        "only operators set the grace period"
    stranger = register(operator_client, tier="FREE")
    assert _client_with(stranger["adminApiKey"]).post(f"{URL}/{tid}/upgrade", {"newTier": "FREE"},
                                                     format="json").status_code == 404
    assert _client_with(stranger["adminApiKey"]).get(f"{URL}/{tid}/resources").status_code == 404
    _ended(stranger["id"])


def test_an_enterprise_tenant_cannot_move_down_and_a_suspended_one_cannot_be_suspended(dataplane, operator_client):
    enterprise = _provisioned(operator_client, tier="ENTERPRISE")
    refused = operator_client.post(f"{URL}/{enterprise['id']}/upgrade", {"newTier": "PROFESSIONAL"}, format="json")
    assert refused.status_code == 409 and refused.json()["error"] == "downgrade_unsupported"
    assert operator_client.post(f"{URL}/{enterprise['id']}/suspend", {"reason": "invoice"},
                                format="json").status_code == 202
    assert _ended(enterprise["id"]).status == "COMPLETED"
    again = operator_client.post(f"{URL}/{enterprise['id']}/suspend", {}, format="json")
    assert again.status_code == 409 and "The tenant is SUSPENDED" in again.json()["detail"]
    assert _tenant(enterprise["id"]).suspension_reason == "invoice"


def test_an_idempotency_key_starts_an_operation_once(dataplane, operator_client):
    tenant = _provisioned(operator_client, tier="FREE")
    headers = {"HTTP_IDEMPOTENCY_KEY": "upgrade-1"}
    first = operator_client.post(f"{URL}/{tenant['id']}/upgrade", {"newTier": "PROFESSIONAL"}, format="json",
                                 **headers)
    second = operator_client.post(f"{URL}/{tenant['id']}/upgrade", {"newTier": "PROFESSIONAL"}, format="json",
                                  **headers)
    assert first.status_code == second.status_code == 202
    assert second.json()["jobId"] == first.json()["jobId"] and second["Idempotent-Replayed"] == "true"
    assert ProvisioningJob.objects.filter(tenant_id=tenant["id"], kind="CHANGE_TIER").count() == 1
    other = operator_client.post(f"{URL}/{tenant['id']}/upgrade", {"newTier": "ENTERPRISE"}, format="json",
                                 **headers)
    assert other.status_code == 409 and other.json()["error"] == "idempotency_key_reused"
    assert _ended(tenant["id"]).status == "COMPLETED" and _tenant(tenant["id"]).tier == "PROFESSIONAL"


def test_a_deletion_carries_its_fault_injection_to_the_deprovisioning_it_schedules(dataplane, operator_client):
    tenant = _provisioned(operator_client, tier="FREE")
    tid = tenant["id"]
    answer = operator_client.delete(f"{URL}/{tid}", {"graceSeconds": 0, "simulate": {
        "faults": {"DELETE_TENANT_NAMESPACE": {"mode": "permanent"}}}}, format="json")
    assert answer.status_code == 202, answer.content
    _ended(tid)
    assert sweep().deprovisioning
    job = wait_for(lambda: (lambda j: j if j.kind == "DEPROVISION" and j.is_terminal else None)(job_of(tid)),
                   timeout=60, message="the deprovisioning to end")
    assert job.status == "FAILED" and "DELETE_TENANT_NAMESPACE" in job.error_message
    assert "Namespace tenant-" in job.error_message, "what is left is named"
    assert _tenant(tid).status == "PENDING_DELETION"
    retried = operator_client.post(f"{URL}/{tid}/provisioning/retry", {"simulate": {"faults": {}}}, format="json")
    assert retried.status_code == 202, retried.content
    wait_for(lambda: _tenant(tid).status == "DELETED", timeout=60, message="DELETED")
    assert not SimulatedResource.objects.filter(owner=tenant["slug"]).exists()
    foreign = operator_client.delete(f"{URL}/{_provisioned(operator_client)['id']}", {"simulate": {
        "faults": {"TERRAFORM_APPLY": {"mode": "permanent"}}}}, format="json")
    assert foreign.status_code == 400 and "simulate.faults" in foreign.json()["fields"]
