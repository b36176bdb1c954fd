from __future__ import annotations

import uuid

from django.db import models


class Tier(models.TextChoices):
    FREE = "FREE"
    PROFESSIONAL = "PROFESSIONAL"
    ENTERPRISE = "ENTERPRISE"


class BillingPlan(models.Model):
    """A plan of REFERENCE.md; seeded by a data migration. None means custom or unlimited."""

    code = models.SlugField(primary_key=True, max_length=32)
    name = models.CharField(max_length=64)
    tier = models.CharField(max_length=16, choices=Tier.choices, unique=True)
    monthly_price_cents = models.PositiveIntegerField(null=True, blank=True)
    annual_price_cents = models.PositiveIntegerField(null=True, blank=True)
    max_users = models.PositiveIntegerField(null=True, blank=True)
    max_queries_per_month = models.PositiveIntegerField(null=True, blank=True)
    storage_gb = models.PositiveIntegerField(null=True, blank=True)

    def __str__(self) -> str:
        return self.name


class Subscription(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "ACTIVE"
        CANCELLED = "CANCELLED"

    class Cycle(models.TextChoices):
        MONTHLY = "MONTHLY"
        ANNUAL = "ANNUAL"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.OneToOneField("tenants.Tenant", on_delete=models.CASCADE, related_name="subscription")
    plan = models.ForeignKey(BillingPlan, on_delete=models.PROTECT, related_name="subscriptions")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    billing_cycle = models.CharField(max_length=16, choices=Cycle.choices, default=Cycle.MONTHLY)
    started_at = models.DateTimeField()
    current_period_end = models.DateTimeField()
