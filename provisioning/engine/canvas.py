"""The canvas: a job's plan as one Celery chain of phase tasks, and its rollback as another.

    chain(run_phase.si(job, p1), run_phase.si(job, p2), ..., run_phase.si(job, pN))
    chain(compensate_phase.si(job, pK), ..., compensate_phase.si(job, p1))   # latest first

These two builders are the only way work is sent to the data plane: a registration or an
operation sends the job's canvas once, on commit; resuming (the sweeper, a retry, a lapsed
lease) sends the same canvas from the first unfinished phase. No chord, no result backend:
the database says what is done, the canvas is transport (DESIGN.md section 3).
"""
from __future__ import annotations

from typing import Iterable

from celery import chain

from provisioning.engine.plans import Plan


def phase_canvas(job_id, plan: Plan, from_phase: str | None = None):
    """run_phase for each phase of the plan from `from_phase` (default: the first), in order."""
    from provisioning.tasks import run_phase

    start = plan.phases.index(from_phase) if from_phase else 0
    return chain(*[run_phase.si(str(job_id), phase) for phase in plan.phases[start:]])


def rollback_canvas(job_id, phases: Iterable[str]):
    """compensate_phase for each phase given (latest first)."""
    from provisioning.tasks import compensate_phase

    return chain(*[compensate_phase.si(str(job_id), phase) for phase in phases])


def _apply(task, job: str, phases: list[str], *, countdown: float | None = None, task_id: str | None = None,
           producer=None) -> None:
    """Send a chain as Celery's chain.apply_async does (the first task, carrying the rest in its
    `chain` option, last first), without building and freezing the chain object first: the same
    message for a third of the cost."""
    first, *rest = [task.si(job, phase) for phase in phases]
    first.apply_async(chain=[sig for sig in reversed(rest)] or None, countdown=countdown or None, task_id=task_id,
                      producer=producer)


_prepared = None


def _send(task, job_id, phases, countdown: float | None = None) -> None:
    """Send the canvas of `task` over `phases` for a job. Without a countdown, as a prepared message
    (matih.broker.PreparedMessages: the bytes Celery wrote for the first canvas of this shape, with
    this job's id and new ids), which every registration and every resumed job pays a quarter of."""
    global _prepared
    job, phases = str(job_id), list(phases)
    if countdown is None:
        from matih.broker import PreparedMessages
        from matih.celery import app

        if _prepared is None:
            _prepared = PreparedMessages(app)
        if _prepared.send((task.name, *phases), job, lambda marker, task_id, producer: _apply(
                task, marker, phases, task_id=task_id, producer=producer)):
            return
    _apply(task, job, phases, countdown=countdown)


def send_phases(job_id, plan: Plan, from_phase: str | None = None) -> None:
    from provisioning.tasks import run_phase

    start = plan.phases.index(from_phase) if from_phase else 0
    _send(run_phase, job_id, plan.phases[start:])


def send_rollback(job_id, phases: Iterable[str], countdown: float | None = None) -> None:
    from provisioning.tasks import compensate_phase

    phases = list(phases)
    if phases:
        _send(compensate_phase, job_id, phases, countdown=countdown)


def dispatch_job(job_id, plan: Plan) -> None:
    """Hand a committed PENDING job to the data plane (its first phase starts it)."""
    send_phases(job_id, plan)
