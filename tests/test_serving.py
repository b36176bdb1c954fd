"""How each entry point connects to PostgreSQL: the ASGI server pools, WSGI and workers persist.

Each case imports the entry point in a fresh interpreter, since the settings module reads
the environment once, when it loads.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

REPORT_CONNECTION_HANDLING = """
import json, sys
import {module}
from django.conf import settings
from django.db import connections
default = settings.DATABASES["default"]
print(json.dumps({{
    "pool": default["OPTIONS"].get("pool"),
    "connMaxAge": default["CONN_MAX_AGE"],
    "backendHasPool": connections["default"].pool is not None,
}}))
"""


def connection_handling(module: str, **environment: str) -> dict:
    env = {key: value for key, value in os.environ.items() if key not in ("MATIH_DB_POOL", "DJANGO_SETTINGS_MODULE")}
    env.update(environment)
    done = subprocess.run([sys.executable, "-c", REPORT_CONNECTION_HANDLING.format(module=module)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_asgi_entry_point_turns_the_psycopg_pool_on():
    handling = connection_handling("matih.asgi")
    assert handling["pool"] is not None and handling["pool"]["max_size"] >= 1
    assert handling["backendHasPool"] is True
    assert handling["connMaxAge"] == 0


def test_asgi_entry_point_leaves_the_pool_off_when_told():
    handling = connection_handling("matih.asgi", MATIH_DB_POOL="false")
    assert handling["pool"] is None
    assert handling["backendHasPool"] is False


@pytest.mark.parametrize("module", ["matih.wsgi", "matih.celery"])
def test_wsgi_and_workers_keep_persistent_connections_without_a_pool(module):
    handling = connection_handling(module)
    assert handling["pool"] is None
    assert handling["backendHasPool"] is False
    assert handling["connMaxAge"] > 0
