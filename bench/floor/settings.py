"""The floor's settings: Django and DRF with nothing on top (no auth, sessions, logging, metrics, Celery).

The database settings are the product's own (persistent connections, server-side binding,
prepared statements), so the benchmark's ratio measures the product's code, not a
difference in connection handling.
"""
from matih.settings import DATABASES  # noqa: F401  (one place for the database options)

SECRET_KEY = "matih-bench-floor"  # nothing is signed; Django only insists on one
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["bench.floor"]
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "bench.floor.urls"
WSGI_APPLICATION = "bench.floor.wsgi.application"
USE_TZ = True
TIME_ZONE = "UTC"
USE_I18N = False
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
REST_FRAMEWORK = {"UNAUTHENTICATED_USER": None}  # no django.contrib.auth; the view names its own classes
# The regions the product serves (matih.settings.MATIH_REGIONS, the same default).
from matih.settings import MATIH_REGIONS  # noqa: E402,F401
LOGGING_CONFIG = None  # the floor configures no logging of its own
