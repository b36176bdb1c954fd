"""The billing plans of REFERENCE.md. None is custom pricing or unlimited."""
from __future__ import annotations

PLANS = [
    dict(code="starter", name="Starter", tier="FREE", monthly_price_cents=0, annual_price_cents=0,
         max_users=3, max_queries_per_month=1_000, storage_gb=5),
    dict(code="professional", name="Professional", tier="PROFESSIONAL", monthly_price_cents=29_900,
         annual_price_cents=299_000, max_users=25, max_queries_per_month=50_000, storage_gb=100),
    dict(code="enterprise", name="Enterprise", tier="ENTERPRISE", monthly_price_cents=None,
         annual_price_cents=None, max_users=None, max_queries_per_month=None, storage_gb=None),
]


def seed_plans(BillingPlan) -> None:
    for plan in PLANS:
        BillingPlan.objects.update_or_create(code=plan["code"], defaults=plan)
