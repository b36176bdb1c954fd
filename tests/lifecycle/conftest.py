"""The lifecycle tests use the real worker and sweeper of tests/harness.py (one per session)."""
