"""Settings, read from the environment (twelve-factor).

Every setting has a safe default for the embedded run; see the README's
configuration table for the full list.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

from matih import embedded

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def database_from_url(url: str) -> dict:
    parts = urlparse(url)
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parts.path.lstrip("/")) or "postgres",
        "USER": unquote(parts.username or "postgres"),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": query.pop("host", parts.hostname or ""),
        "PORT": str(parts.port or ""),
        "OPTIONS": query,
    }


DEBUG = env_bool("MATIH_DEBUG", False)
SECRET_KEY = os.environ.get("MATIH_SECRET_KEY", "matih-embedded-development-key-change-me-in-production")
# Key for secrets at rest (service principal client secrets); Fernet key or any passphrase.
MATIH_ENCRYPTION_KEY = os.environ.get("MATIH_ENCRYPTION_KEY", SECRET_KEY)
ALLOWED_HOSTS = env_list("MATIH_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("MATIH_CSRF_TRUSTED_ORIGINS", "http://127.0.0.1:8000,http://localhost:8000")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "channels",
    "iam",
    "billing",
    "tenants",
    "provisioning",
    "deploy",
    "matih",  # management commands: up
]

MIDDLEWARE = [
    "matih.observability.RequestContextMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "matih.urls"
WSGI_APPLICATION = "matih.wsgi.application"
ASGI_APPLICATION = "matih.asgi.application"
AUTH_USER_MODEL = "iam.User"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates", BASE_DIR / "provisioning" / "dashboard" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------
DATABASE_URL = os.environ.get("DATABASE_URL") or embedded.postgres_url()
DATABASES = {"default": database_from_url(DATABASE_URL)}
# Under a sync WSGI server persistent connections are the fast path. Under ASGI a
# sync view runs in a thread pool and CONN_MAX_AGE churns connections, so the
# ASGI processes turn on Django's psycopg pool (MATIH_DB_POOL=true) instead.
if env_bool("MATIH_DB_POOL", False):
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"]["pool"] = {
        "min_size": env_int("MATIH_DB_POOL_MIN", 2),
        "max_size": env_int("MATIH_DB_POOL_MAX", 10),
        "timeout": 10,
    }
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env_int("MATIH_CONN_MAX_AGE", 300)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# Server-side parameter binding lets psycopg prepare the statements a connection
# repeats (a registration runs the same dozen each time), so PostgreSQL parses and
# plans each once per connection, not once per request; it also spares Python the
# quoting of every parameter. MATIH_DB_PREPARE_THRESHOLD=off restores Django's
# default (client-side binding, nothing prepared), e.g. behind a pooler in
# transaction mode that cannot keep prepared statements.
_prepare_threshold = os.environ.get("MATIH_DB_PREPARE_THRESHOLD", "5").strip().lower()
if _prepare_threshold not in ("", "off", "none"):
    DATABASES["default"]["OPTIONS"].setdefault("server_side_binding", True)
    DATABASES["default"]["OPTIONS"].setdefault("prepare_threshold", int(_prepare_threshold))
DATABASES["default"]["TEST"] = {"NAME": os.environ.get("MATIH_TEST_DATABASE", "test_matih")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: broker, results, channel layer, cache, locks ------------------------
REDIS_URL = os.environ.get("REDIS_URL") or embedded.redis_url()

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "matih",
    }
}

# redis-py 8 times reads out after 5 s by default, exactly channels-redis's blocking
# BZPOPMIN wait (brpop_timeout = 5): every idle receive would fail. Give reads room.
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 15}],
                   "prefix": os.environ.get("MATIH_CHANNEL_PREFIX", "matih")},
    }
}

# --- Celery ---------------------------------------------------------------------
CELERY_BROKER_URL = REDIS_URL
if CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    CELERY_BROKER_TRANSPORT = "matih.broker:Transport"  # kombu's, one Redis client per channel
CELERY_RESULT_BACKEND = REDIS_URL
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env_int("MATIH_TASK_TIME_LIMIT", 3600)
CELERY_TASK_SOFT_TIME_LIMIT = env_int("MATIH_TASK_SOFT_TIME_LIMIT", 3300)
# One visibility timeout: a task not acknowledged within it is redelivered. It must
# exceed the longest phase task (the Terraform apply of an ENTERPRISE cluster).
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env_int("MATIH_VISIBILITY_TIMEOUT", 3900)}
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {"visibility_timeout": env_int("MATIH_VISIBILITY_TIMEOUT", 3900)}
CELERY_TASK_IGNORE_RESULT = True
# Celery's Django fixup closes the database connection around every task unless this
# is set: a new PostgreSQL connection per step cost more than the step itself.
# Connections are still recycled after this many tasks (and by CONN_MAX_AGE).
CELERY_DB_REUSE_MAX = env_int("MATIH_DB_REUSE_MAX", 1000)
CELERY_RESULT_EXPIRES = 3600
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_WORKER_REDIRECT_STDOUTS_LEVEL = "INFO"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = "UTC"

# --- MATIH ------------------------------------------------------------------------
MATIH_INFRA_BACKEND = os.environ.get("MATIH_INFRA_BACKEND", "simulated")
MATIH_SIM_TIME_SCALE = env_float("MATIH_SIM_TIME_SCALE", 0.01)
MATIH_SIM_FAULT_RATE = env_float("MATIH_SIM_FAULT_RATE", 0.0)
MATIH_RETRY_BACKOFF = [float(x) for x in env_list("MATIH_RETRY_BACKOFF", "60,120,240")]
MATIH_RETRY_JITTER = env_float("MATIH_RETRY_JITTER", 0.1)
MATIH_MAX_RETRIES = env_int("MATIH_MAX_RETRIES", 3)
# Beat's sweep is what resumes a due retry. In the simulated cloud the backoff is scaled with the
# steps (1 s and up, provisioning.engine.states.backoff_seconds), so a 15-s sweep would be most of
# the wait: there it sweeps every 2 s unless told otherwise.
MATIH_SWEEP_INTERVAL = env_int("MATIH_SWEEP_INTERVAL",
                               2 if MATIH_INFRA_BACKEND == "simulated" and MATIH_SIM_TIME_SCALE < 1 else 15)
MATIH_STEP_LEASE = env_int("MATIH_STEP_LEASE", 120)
# PostgreSQL's synchronous_commit for the Celery workers' connections: "off" (their commits do
# not wait for the disk; see matih/celery.py for what that trades), "on", or "server" (leave it).
MATIH_WORKER_SYNCHRONOUS_COMMIT = os.environ.get("MATIH_WORKER_SYNCHRONOUS_COMMIT", "off").strip().lower()
if MATIH_WORKER_SYNCHRONOUS_COMMIT not in ("off", "on", "local", "remote_write", "remote_apply", "server"):
    raise ValueError("MATIH_WORKER_SYNCHRONOUS_COMMIT: use off, on, local, remote_write, remote_apply or server")
# The workers' sessions prepare each statement at its first run and plan it once (generic plans);
# false leaves PostgreSQL's and psycopg's defaults (see matih/celery.py).
MATIH_WORKER_PLAN_ONCE = env_bool("MATIH_WORKER_PLAN_ONCE", True)
# How long the first status hint of a batch waits for others before the batch goes out
# (provisioning.live.publish): the most a push is delayed.
MATIH_HINT_COALESCE_MS = env_int("MATIH_HINT_COALESCE_MS", 50)
# Steps of one phase that run side by side, per worker process (they wait on cloud APIs).
MATIH_PHASE_THREADS = env_int("MATIH_PHASE_THREADS", 8)
MATIH_OPEN_SIGNUP = env_bool("MATIH_OPEN_SIGNUP", False)
# Seconds between a tenant's deletion and its deprovisioning (restore is possible until then).
MATIH_DELETION_GRACE = env_int("MATIH_DELETION_GRACE", 7 * 24 * 3600)
# Where a deprovisioning leaves the tenant's data export (pg_dump, with its sha256 in the job).
MATIH_EXPORT_DIR = os.environ.get("MATIH_EXPORT_DIR", str(BASE_DIR / ".matih" / "exports"))
MATIH_SIGNUP_RATE = os.environ.get("MATIH_SIGNUP_RATE", "20/hour")
MATIH_REGIONS = env_list("MATIH_REGIONS", "eastus,eastus2,westus2,westeurope,northeurope,southeastasia")
MATIH_DNS_PARENT_ZONE = os.environ.get("MATIH_DNS_PARENT_ZONE", "matih.ai")
MATIH_MAX_BODY_BYTES = env_int("MATIH_MAX_BODY_BYTES", 65536)
MATIH_WEBHOOK_URLS = env_list("MATIH_WEBHOOK_URLS", "")
MATIH_WEBHOOK_SECRET = os.environ.get("MATIH_WEBHOOK_SECRET", "")
MATIH_WEBHOOK_BACKOFF = [float(x) for x in env_list("MATIH_WEBHOOK_BACKOFF", "1,5,30,120,600")]
# Tenants' webhooks may reach loopback, private and link-local addresses (tests, on-premises installs).
MATIH_WEBHOOK_ALLOW_PRIVATE = env_bool("MATIH_WEBHOOK_ALLOW_PRIVATE", False)
DATA_UPLOAD_MAX_MEMORY_SIZE = max(MATIH_MAX_BODY_BYTES, 2621440)

EMAIL_BACKEND = os.environ.get("MATIH_EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_FILE_PATH = os.environ.get("MATIH_EMAIL_FILE_PATH", str(BASE_DIR / ".matih" / "mail"))
DEFAULT_FROM_EMAIL = os.environ.get("MATIH_FROM_EMAIL", "provisioning@matih.local")

# --- REST framework -----------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["iam.auth.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["matih.api.BoundedJSONParser"],
    "DEFAULT_PAGINATION_CLASS": "matih.api.Pagination",
    "DEFAULT_SCHEMA_CLASS": "matih.schema.AutoSchema",
    "EXCEPTION_HANDLER": "matih.api.exception_handler",
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_THROTTLE_RATES": {"signup": MATIH_SIGNUP_RATE},
}
SPECTACULAR_SETTINGS = {
    "TITLE": "MATIH tenant lifecycle API",
    "DESCRIPTION": (
        "Register tenants and follow their provisioning. Every path answers with or without its trailing "
        "slash; ids are UUIDs in either case. Errors have one shape (`Error`). Strings may not contain NUL "
        "characters (PostgreSQL cannot store them)."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "OAS_VERSION": "3.1.0",  # for propertyNames: the names a free-keyed map takes (Azure tags)
    "ENUM_GENERATE_CHOICE_DESCRIPTION": False,
    "ENUM_NAME_OVERRIDES": {
        "TierEnum": "billing.models.Tier", "TenantStatusEnum": "tenants.models.TenantStatus",
        "JobStatusEnum": "provisioning.models.JobStatus", "StepStatusEnum": "provisioning.models.StepStatus",
        "DeploymentTypeEnum": "tenants.models.DeploymentType",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "provisioning.live.sse.describe_in_schema",  # a plain async view: not seen by DRF
    ],
}

# --- Static files, i18n ---------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Served by WhiteNoise from STATIC_ROOT (collectstatic), or from the apps' folders in tests.
WHITENOISE_USE_FINDERS = True
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

# --- Logging: one JSON object a line, with the request id --------------------------------
LOG_LEVEL = os.environ.get("MATIH_LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "matih.observability.ContextFilter"}},
    "formatters": {"json": {"()": "matih.observability.JsonFormatter"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "stream": sys.stderr,
            "formatter": "json",
            "filters": ["context"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.server": {"level": "WARNING"},
        "django.request": {"level": "ERROR"},
        "celery.app.trace": {"level": "WARNING"},
        "pgserver": {"level": "WARNING"},
        # The Azure SDK logs every credential probe and HTTP request at INFO (headers included);
        # the drivers report what failed themselves.
        "azure": {"level": "WARNING"},
    },
}

# --- Real infrastructure drivers (MATIH_INFRA_BACKEND=azure) ---------------------------------
# Kubernetes, Helm, Azure, Terraform and data-plane settings, each read from the environment
# with a safe default; the list and their meaning are in deploy/settings.py.
from deploy.settings import *  # noqa: E402,F401,F403
