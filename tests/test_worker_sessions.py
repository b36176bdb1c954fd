"""The sessions of a worker's pool processes (matih.celery._data_plane_commits, run at
worker_process_init): commits that do not wait for the disk, and statements planned once."""
from __future__ import annotations

import pytest
from django.db import connections
from django.db.backends.signals import connection_created

from matih.celery import _data_plane_commits

pytestmark = pytest.mark.django_db


@pytest.fixture
def worker_session(settings):
    made = []

    def open_session():
        _data_plane_commits()
        wrapper = connections.create_connection("default")
        wrapper.ensure_connection()
        made.append(wrapper)
        with wrapper.cursor() as cursor:
            cursor.execute("SELECT current_setting('synchronous_commit'), current_setting('plan_cache_mode')")
            commit, plans = cursor.fetchone()
        return {"synchronous_commit": commit, "plan_cache_mode": plans,
                "prepare_threshold": wrapper.connection.prepare_threshold}

    yield open_session
    connection_created.disconnect(dispatch_uid="matih-worker-synchronous-commit")
    for wrapper in made:
        wrapper.close()


def test_a_worker_plans_each_statement_once_and_does_not_wait_for_the_disk(worker_session):
    # A worker runs each statement of the engine a few times per job, on several connections (its
    # step threads'): planned at each execution, the hot path's statements cost 1-3 ms more each.
    assert worker_session() == {"synchronous_commit": "off", "plan_cache_mode": "force_generic_plan",
                                "prepare_threshold": 0}


def test_the_worker_session_settings_can_be_turned_off(worker_session, settings):
    settings.MATIH_WORKER_SYNCHRONOUS_COMMIT = "server"
    settings.MATIH_WORKER_PLAN_ONCE = False
    session = worker_session()
    assert session["plan_cache_mode"] == "auto"
    assert session["synchronous_commit"] == "on"  # the server's
    assert session["prepare_threshold"] == 5
