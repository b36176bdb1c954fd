from django.db import migrations


def seed(apps, schema_editor):
    from deploy.seed import seed_shared_clusters

    seed_shared_clusters(apps.get_model("deploy", "Cluster"))


class Migration(migrations.Migration):
    dependencies = [("deploy", "0001_initial")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
