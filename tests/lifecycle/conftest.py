"""The lifecycle tests use the data plane's real worker and sweeper (tests/dataplane/conftest.py)."""
from tests.dataplane.conftest import (  # noqa: F401  (fixtures)
    celery_worker,
    dataplane,
    fast_settings,
    seeded,
    sweeper,
    test_output_dir,
)
