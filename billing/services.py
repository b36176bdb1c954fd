"""BillingPlanService: the plan a tier gets and the tenant's subscription."""
from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from billing.models import BillingPlan, Subscription

_plans_by_tier: dict[str, BillingPlan] = {}


def plan_for_tier(tier: str) -> BillingPlan:
    # Plans change only by migration; cache them per process to spare the hot path a query.
    plan = _plans_by_tier.get(tier)
    if plan is None:
        plan = BillingPlan.objects.get(tier=tier)
        _plans_by_tier[tier] = plan
    return plan


def subscription_create(*, tenant, tier: str) -> Subscription:
    now = timezone.now()
    return Subscription.objects.create(
        tenant=tenant, plan=plan_for_tier(tier), started_at=now, current_period_end=now + timedelta(days=30)
    )
