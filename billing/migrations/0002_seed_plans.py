from django.db import migrations


def seed(apps, schema_editor):
    from billing.seed import seed_plans

    seed_plans(apps.get_model("billing", "BillingPlan"))


def unseed(apps, schema_editor):
    from billing.seed import PLANS

    apps.get_model("billing", "BillingPlan").objects.filter(code__in=[p["code"] for p in PLANS]).delete()


class Migration(migrations.Migration):
    dependencies = [("billing", "0001_initial")]
    operations = [migrations.RunPython(seed, unseed)]
