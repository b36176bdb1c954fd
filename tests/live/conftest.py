"""Live status: the ASGI server as in production (gunicorn + UvicornWorker on matih.asgi, pooled
database connections) and the real worker, from tests/harness.py (one of each per session)."""
from tests.harness import ROOT, AsgiServer, worker_env  # noqa: F401  (kept for the tests that import them here)
