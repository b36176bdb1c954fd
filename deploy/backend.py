"""Which implementation of the drivers a job talks to (MATIH_INFRA_BACKEND)."""
from __future__ import annotations

from django.conf import settings

from deploy.simulated import SimulatedCloud


def backend_for(*, simulate: dict | None = None):
    """The drivers for one job: the simulated cloud (with the job's fault plan) or the real ones."""
    if settings.MATIH_INFRA_BACKEND == "simulated":
        simulate = simulate or {}
        return SimulatedCloud(
            time_scale=float(simulate.get("timeScale", settings.MATIH_SIM_TIME_SCALE)),
            faults=simulate.get("faults") or {},
            fault_rate=settings.MATIH_SIM_FAULT_RATE,
        )
    from deploy.real import real_backend

    return real_backend(settings)
