"""The canvas: a job's plan as one Celery chain of phase tasks, and its rollback as another.

    chain(run_phase.si(job, p1), run_phase.si(job, p2), ..., run_phase.si(job, pN))
    chain(compensate_phase.si(job, pK), ..., compensate_phase.si(job, p1))   # latest first

These two builders are the only way work is sent to the data plane: a registration or an
operation sends the job's canvas once, on commit; resuming (the sweeper, a retry, a lapsed
lease) sends the same canvas from the first unfinished phase. No chord, no result backend:
the database says what is done, the canvas is transport (DESIGN.md section 3).

The messages are Celery's: a canvas (and the next link of a running chain, `send_next_link`, and
a finished job's notification, `send_job_task`) goes out as a prepared message when it can (matih.broker: the bytes Celery wrote for the first
message of the same shape, with new ids), else through Celery's `apply_async`.
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
    first.apply_async(chain=list(reversed(rest)) or None, countdown=countdown or None, task_id=task_id,
                      producer=producer)


_prepared_messages = None
# A link of a chain this module built: an immutable signature of (job, phase), nothing else.
_LINK_KEYS = frozenset({"task", "args", "kwargs", "options", "subtask_type", "immutable"})


def _prepared():
    global _prepared_messages
    if _prepared_messages is None:
        from matih.broker import PreparedMessages
        from matih.celery import app

        _prepared_messages = PreparedMessages(app)
    return _prepared_messages


def _send(task, job_id, phases, countdown: float | None = None) -> None:
    """Send the canvas of `task` over `phases` for a job. Without a countdown, as a prepared message
    (matih.broker.PreparedMessages: the bytes Celery wrote for the first canvas of this shape, with
    this job's id and new ids), for about a fifth of the CPU; every registration and every resumed
    job sends one."""
    job, phases = str(job_id), list(phases)
    if countdown is None and _prepared().send((task.name, *phases), {"job": job}, lambda markers, producer: _apply(
            task, markers["job"], phases, task_id=markers["task"], producer=producer)):
        return
    _apply(task, job, phases, countdown=countdown)


def send_next_link(request) -> bool:
    """Send the next link of the chain the current task runs in, as Celery's tracer would after the task
    returns (celery.app.trace: the last signature of `request.chain`, carrying the rest, its parent the
    current task, its root the chain's), as a prepared message. False, with nothing sent, when that
    cannot be (a chain this module did not build, a parent's priority to inherit, or the prepared path
    refuses): the tracer then sends it as always."""
    from celery import signature

    rest = request.chain
    if not rest or not request.id or not request.root_id:
        return False
    first = rest[-1] if isinstance(rest[-1], dict) else {}
    name, job = first.get("task"), (first.get("args") or (None,))[0]
    for link in rest:  # every link, the first included, as _apply builds them
        if not (isinstance(link, dict) and link.keys() == _LINK_KEYS and link["task"] == name
                and link["kwargs"] == {} and link["options"] == {} and link["immutable"] is True
                and link["subtask_type"] is None and isinstance(link["args"], (list, tuple)) and len(link["args"]) == 2
                and link["args"][0] == job and isinstance(link["args"][1], str)):
            return False
    messages = _prepared()
    if messages.app.conf.task_inherit_parent_priority:
        return False
    phases = [link["args"][1] for link in reversed(rest)]

    def write(markers, producer) -> None:  # what the tracer does, with the markers
        chain = [dict(link, args=[markers["job"], link["args"][1]]) for link in rest]
        signature(chain.pop(), app=messages.app).apply_async(
            (None,), chain=chain, parent_id=markers["parent"], root_id=markers["root"], priority=None,
            task_id=markers["task"], producer=producer)

    return messages.send((name, "link", *phases), {"job": str(job), "root": request.root_id,
                                                    "parent": request.id}, write)


def send_job_task(task, job_id) -> None:
    """`task(job_id)`, one task of one job (the notification of a finished job), as a prepared message
    when it can be, else through Celery's `apply_async`."""
    job = str(job_id)
    if _prepared().send((task.name,), {"job": job}, lambda markers, producer: task.apply_async(
            (markers["job"],), task_id=markers["task"], producer=producer)):
        return
    task.apply_async((job,))


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
