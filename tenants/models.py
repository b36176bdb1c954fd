from __future__ import annotations

import uuid

from django.db import models

from billing.models import Tier


class TenantStatus(models.TextChoices):
    """MATIH's TenantStatus."""

    PENDING = "PENDING"
    PROVISIONING = "PROVISIONING"
    ACTIVE = "ACTIVE"
    UPGRADING = "UPGRADING"
    SUSPENDED = "SUSPENDED"
    PENDING_DELETION = "PENDING_DELETION"
    FAILED = "FAILED"
    DELETED = "DELETED"


class DeploymentType(models.TextChoices):
    SHARED = "SHARED"
    DEDICATED = "DEDICATED"


class Tenant(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    # Unique among the tenants that are not DELETED (tenant_slug_unique): a deleted tenant's
    # slug is free for a new tenant, its record kept for audit.
    slug = models.CharField(max_length=63)
    tier = models.CharField(max_length=16, choices=Tier.choices)
    status = models.CharField(max_length=20, choices=TenantStatus.choices, default=TenantStatus.PENDING)
    region = models.CharField(max_length=32)
    admin_email = models.EmailField()
    provisioning_started_at = models.DateTimeField(null=True, blank=True)
    provisioned_at = models.DateTimeField(null=True, blank=True)
    deployment_type = models.CharField(max_length=16, choices=DeploymentType.choices, null=True, blank=True)
    kubernetes_namespace = models.CharField(max_length=80, null=True, blank=True)
    azure_aks_cluster_name = models.CharField(max_length=120, null=True, blank=True)
    dns_zone = models.CharField(max_length=255, null=True, blank=True)
    error_message = models.TextField(blank=True, default="")
    # ENTERPRISE only: the Azure service principal, encrypted (matih.secrets); never returned.
    service_principal_encrypted = models.TextField(blank=True, default="")
    # The tenant's life after provisioning (DESIGN.md section 6).
    suspended_at = models.DateTimeField(null=True, blank=True)
    suspension_reason = models.CharField(max_length=500, blank=True, default="")
    deletion_scheduled_at = models.DateTimeField(null=True, blank=True)
    # What a restore before deletionScheduledAt brings it back to (ACTIVE, SUSPENDED or FAILED).
    status_before_deletion = models.CharField(max_length=20, choices=TenantStatus.choices, blank=True, default="")
    deleted_at = models.DateTimeField(null=True, blank=True)
    # For the deprovisioning a deletion schedules: the operator's fault injection (simulated cloud).
    deletion_options = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["status", "tier"]), models.Index(fields=["-created_at"]),
            # The sweeper's question: whose grace period has passed.
            models.Index(fields=["deletion_scheduled_at"], name="tenant_deletion_due",
                         condition=models.Q(status="PENDING_DELETION")),
        ]
        constraints = [
            models.UniqueConstraint(fields=["slug"], condition=~models.Q(status="DELETED"),
                                    name="tenant_slug_unique"),
        ]

    def __str__(self) -> str:
        return self.slug


class TenantSettings(models.Model):
    tenant = models.OneToOneField(Tenant, on_delete=models.CASCADE, primary_key=True, related_name="settings")
    values = models.JSONField(default=dict)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "tenant settings"


class IdempotencyRecord(models.Model):
    """The answer given to a POST with an Idempotency-Key, replayed for the same key.

    Written in the same transaction as the registration it answers, so a key
    either names a committed registration or nothing.
    """

    id = models.BigAutoField(primary_key=True)
    principal = models.CharField(max_length=64)
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    response_status = models.PositiveSmallIntegerField()
    # Encrypted (matih.secrets): the answer holds the new admin key. Purged after a day
    # (IDEMPOTENCY_RETENTION, by the sweeper): a key is then free again.
    response_body_encrypted = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["principal", "key"], name="idempotency_unique_key")]
