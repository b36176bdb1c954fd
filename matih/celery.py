"""The Celery app of the data plane (`celery -A matih worker`, `celery -A matih beat`)."""
import os

from celery import Celery
from celery.signals import worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "matih.settings")
# Celery's Django fixup runs Django's system checks when a worker starts; the URL checks import
# the whole URLconf (admin, DRF views, the schema generator): 17 MiB in every pool process that
# no task uses. `manage.py migrate` (which `up`, CI and a deploy run first) runs the same checks.
os.environ.setdefault("CELERY_SKIP_CHECKS", "true")


def __getattr__(name: str):
    """`CELERY_SETTINGS`: the CELERY_* settings as a plain dict, made when Celery first reads its
    configuration (by then Django's settings are configured; at import they may not be).

    Celery reads its configuration about seven times per message it sends, each through its
    layered view and, with "django.conf:settings", Django's lazy settings object, trying every
    spelling of the key: a sixth of the CPU of sending a canvas. A dict answers the same keys.
    A CELERY_* setting changed at run time is not seen (as Celery caches much of it anyway)."""
    if name == "CELERY_SETTINGS":
        from django.conf import settings

        return {key: getattr(settings, key) for key in dir(settings) if key.startswith("CELERY_")}
    raise AttributeError(name)


app = Celery("matih")
app.config_from_object("matih.celery:CELERY_SETTINGS", namespace="CELERY")
app.autodiscover_tasks()


@worker_process_init.connect
def _data_plane_commits(**_) -> None:
    """A worker's commits do not wait for the WAL to reach the disk (MATIH_WORKER_SYNCHRONOUS_COMMIT).

    Every commit of the engine (a claim, a step's success, an event) otherwise waits for an
    fsync: about 1.5 ms here, several times a bare Celery hop, thirty times per tenant. What
    this trades: if the PostgreSQL server itself crashes (not a worker, not Redis), the last
    few hundred milliseconds of the workers' commits may be lost, never half of one, and the
    database stays consistent; every step is idempotent and the sweeper re-drives what the
    database says is unfinished, so a lost commit costs a step run again. The control plane
    (registrations, API writes) keeps the server's setting: its answers are durable.

    They also prepare each statement at its first run and plan it once (MATIH_WORKER_PLAN_ONCE):
    a worker runs each statement of the engine only a few times per job on each of its
    connections, so PostgreSQL's default (prepared after 5 runs, then 5 custom plans) parsed and
    planned most runs of the load and the success again, 1-3 ms each (docs/engine.md).
    """
    from django.conf import settings
    from django.db.backends.signals import connection_created

    mode = settings.MATIH_WORKER_SYNCHRONOUS_COMMIT
    plans_once = settings.MATIH_WORKER_PLAN_ONCE
    if mode == "server" and not plans_once:
        return

    def configure(sender, connection, **kwargs) -> None:
        # Nothing is prepared behind a pooler in transaction mode (MATIH_DB_PREPARE_THRESHOLD=off).
        plan_once = plans_once and connection.connection.prepare_threshold is not None
        with connection.cursor() as cursor:
            if mode != "server":
                cursor.execute("SELECT set_config('synchronous_commit', %s, false)", [mode])
            if plan_once:
                cursor.execute("SELECT set_config('plan_cache_mode', 'force_generic_plan', false)")
        if plan_once:
            connection.connection.prepare_threshold = 0

    # New connections only: Celery's Django fixup closes those inherited from the parent (without a
    # word on the parent's sockets), so every connection a pool process uses is made after this.
    connection_created.connect(configure, weak=False, dispatch_uid="matih-worker-synchronous-commit")
