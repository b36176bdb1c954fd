"""The Celery app of the data plane (`celery -A matih worker`, `celery -A matih beat`)."""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "matih.settings")

app = Celery("matih")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
