"""Hands a committed job to the data plane."""
from __future__ import annotations


def dispatch_job(job_id, tier: str | None = None) -> None:
    from provisioning.tasks import start_job

    start_job.delay(str(job_id), tier)
