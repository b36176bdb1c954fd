from django.contrib import admin

from billing.models import BillingPlan, Subscription


@admin.register(BillingPlan)
class BillingPlanAdmin(admin.ModelAdmin):
    list_display = ("name", "tier", "monthly_price_cents", "annual_price_cents", "max_users",
                    "max_queries_per_month", "storage_gb")


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    list_display = ("tenant", "plan", "status", "billing_cycle", "started_at", "current_period_end")
    list_filter = ("plan", "status")
    search_fields = ("tenant__slug", "tenant__name")
