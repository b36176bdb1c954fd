from django.db import migrations


def create(apps, schema_editor):
    from provisioning.seed import ensure_sweep_periodic_task

    ensure_sweep_periodic_task(
        apps.get_model("django_celery_beat", "IntervalSchedule"),
        apps.get_model("django_celery_beat", "PeriodicTask"),
        apps.get_model("django_celery_beat", "PeriodicTasks"),
    )


def remove(apps, schema_editor):
    from provisioning.seed import SWEEP_TASK_NAME

    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=SWEEP_TASK_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("provisioning", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [migrations.RunPython(create, remove)]
