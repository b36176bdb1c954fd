"""The product's tables, as plain unmanaged models: the columns a registration writes.

The benchmark migrates its scratch database with the product's migrations; the floor
writes the same rows into the same tables (so PostgreSQL maintains the same indexes and
constraints for both) and never creates or alters a table.
"""
from __future__ import annotations

import uuid

from django.contrib.postgres.fields import ArrayField
from django.db import models


class Tenant(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    name = models.CharField(max_length=200)
    slug = models.CharField(max_length=63)
    tier = models.CharField(max_length=16)
    status = models.CharField(max_length=20)
    region = models.CharField(max_length=32)
    admin_email = models.CharField(max_length=254)
    provisioning_started_at = models.DateTimeField(null=True)
    provisioned_at = models.DateTimeField(null=True)
    deployment_type = models.CharField(max_length=16, null=True)
    kubernetes_namespace = models.CharField(max_length=80, null=True)
    azure_aks_cluster_name = models.CharField(max_length=120, null=True)
    dns_zone = models.CharField(max_length=255, null=True)
    error_message = models.TextField(default="")
    service_principal_encrypted = models.TextField(default="")
    suspended_at = models.DateTimeField(null=True)
    suspension_reason = models.CharField(max_length=500, default="")
    deletion_scheduled_at = models.DateTimeField(null=True)
    status_before_deletion = models.CharField(max_length=20, default="")
    deleted_at = models.DateTimeField(null=True)
    deletion_options = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        app_label = "floor"
        managed = False
        db_table = "tenants_tenant"


class TenantSettings(models.Model):
    tenant = models.OneToOneField(Tenant, on_delete=models.CASCADE, primary_key=True, related_name="+")
    values = models.JSONField(default=dict)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        app_label = "floor"
        managed = False
        db_table = "tenants_tenantsettings"


class Role(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=64)
    permissions = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        app_label = "floor"
        managed = False
        db_table = "iam_role"


class User(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    password = models.CharField(max_length=128)
    last_login = models.DateTimeField(null=True)
    is_superuser = models.BooleanField(default=False)
    username = models.CharField(max_length=150, unique=True)
    first_name = models.CharField(max_length=150, default="")
    last_name = models.CharField(max_length=150, default="")
    email = models.CharField(max_length=254, unique=True)
    is_staff = models.BooleanField(default=False)
    is_active = models.BooleanField(default=True)
    date_joined = models.DateTimeField(auto_now_add=True)

    class Meta:
        app_label = "floor"
        managed = False
        db_table = "iam_user"


class Membership(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="+")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    role = models.ForeignKey(Role, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        app_label = "floor"
        managed = False
        db_table = "iam_membership"


class BillingPlan(models.Model):
    code = models.CharField(primary_key=True, max_length=32)
    tier = models.CharField(max_length=16, unique=True)

    class Meta:
        app_label = "floor"
        managed = False
        db_table = "billing_billingplan"


class Subscription(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    tenant = models.OneToOneField(Tenant, on_delete=models.CASCADE, related_name="+")
    plan = models.ForeignKey(BillingPlan, on_delete=models.PROTECT, related_name="+")
    status = models.CharField(max_length=16, default="ACTIVE")
    billing_cycle = models.CharField(max_length=16, default="MONTHLY")
    started_at = models.DateTimeField()
    current_period_end = models.DateTimeField()

    class Meta:
        app_label = "floor"
        managed = False
        db_table = "billing_subscription"


class ApiKey(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="+")
    tenant = models.ForeignKey(Tenant, null=True, on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16)
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True)
    revoked_at = models.DateTimeField(null=True)

    class Meta:
        app_label = "floor"
        managed = False
        db_table = "iam_apikey"


class ProvisioningJob(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=16, default="PROVISION")
    tier = models.CharField(max_length=16)
    from_tier = models.CharField(max_length=16, null=True)
    status = models.CharField(max_length=20, default="PENDING")
    initiated_by = models.ForeignKey(User, null=True, on_delete=models.SET_NULL, related_name="+")
    started_at = models.DateTimeField(null=True)
    completed_at = models.DateTimeField(null=True)
    error_message = models.TextField(default="")
    retry_count = models.PositiveIntegerField(default=0)
    max_retries = models.PositiveIntegerField(default=3)
    next_retry_at = models.DateTimeField(null=True)
    context = models.JSONField(default=dict)
    lease_owner = models.CharField(max_length=200, default="")
    lease_expires_at = models.DateTimeField(null=True)
    version = models.PositiveIntegerField(default=0)
    succeeded_steps = ArrayField(models.CharField(max_length=64), default=list)
    dispatched_at = models.DateTimeField(null=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        app_label = "floor"
        managed = False
        db_table = "provisioning_provisioningjob"
