"""The data-plane tests use the real parts of tests/harness.py (loaded for the whole session by
tests/conftest.py); the names below are kept for the tests that import them from here."""
from tests.harness import (  # noqa: F401
    FAST,
    FAST_SETTINGS,
    ROOT,
    SweeperLoop,
    WorkerProcess,
    database_url_of,
    wait_for,
    wait_until_quiet,
    worker_env,
)
