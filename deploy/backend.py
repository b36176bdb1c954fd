"""Which implementation of the drivers a job talks to (MATIH_INFRA_BACKEND)."""
from __future__ import annotations

from django.conf import settings

from deploy.simulated import SimulatedCloud


def backend_for(*, simulate: dict | None = None, max_retries: int | None = None, tenant_id: str | None = None):
    """The drivers for one job: the simulated cloud (with the job's fault plan) or the real ones.

    `max_retries` (default MATIH_MAX_RETRIES) and `tenant_id` only shape the simulated
    faults' hints: whether a transient fault outlasts the job's retries, and the retry URL.
    """
    if settings.MATIH_INFRA_BACKEND == "simulated":
        simulate = simulate or {}
        return SimulatedCloud(
            time_scale=float(simulate.get("timeScale", settings.MATIH_SIM_TIME_SCALE)),
            faults=simulate.get("faults") or {},
            fault_rate=settings.MATIH_SIM_FAULT_RATE,
            max_retries=settings.MATIH_MAX_RETRIES if max_retries is None else max_retries,
            tenant_id=str(tenant_id) if tenant_id else None,
        )
    from deploy.real import real_backend

    return real_backend(settings)
