"""Plans, as data: for each operation on a tenant (a job's `kind`), ordered phases of steps.

A phase is a state the status API shows; the canvas runs one Celery task per phase
(provisioning.run_phase). A step is one of the seed's operations, run inside its phase's
task: steps of a phase run as their `after` dependencies allow (only steps of the same
phase may be named), the others of the phase side by side. Each step has a nominal
duration (the seed's, the middle of its range; our estimate for the rest) and says what
undoes it.

What a plan does to the tenant when its job completes or fails belongs to the plan (its
`outcome`, provisioning.engine.outcomes), not to the runner. Plans are found by their key
(`plan_key(kind, tier, from_tier)`), which a job's row determines.

This module is also the one place that says which phase is current and which steps are
ready (`Plan.position`, `Plan.ready`): the runner, the sweeper, the status and the admin
ask it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Collection, Mapping

from provisioning.engine import steps_catalog as C


class Kind:
    """The operations a job performs (ProvisioningJob.kind)."""

    PROVISION = "PROVISION"
    CHANGE_TIER = "CHANGE_TIER"
    SUSPEND = "SUSPEND"
    ACTIVATE = "ACTIVATE"
    DEPROVISION = "DEPROVISION"

    ALL = (PROVISION, CHANGE_TIER, SUSPEND, ACTIVATE, DEPROVISION)


@dataclass(frozen=True)
class Step:
    name: str
    phase: str
    nominal_seconds: float
    after: tuple[str, ...] = ()
    compensation: str | None = None  # what undoes it, in words; None: nothing to undo


@dataclass(frozen=True)
class Position:
    """Where a job stands in its plan."""

    completed: tuple[str, ...]
    current: str  # a phase, or "COMPLETED"
    remaining: tuple[str, ...]  # after the current one

    @property
    def is_complete(self) -> bool:
        return self.current == COMPLETED


COMPLETED = "COMPLETED"


@dataclass(frozen=True)
class Plan:
    key: str
    kind: str
    tier: str
    phases: tuple[str, ...]
    steps: tuple[Step, ...]
    outcome: str  # the name of its outcome in provisioning.engine.outcomes
    from_tier: str | None = None
    # Phases from which a failure no longer rolls back: the job retries, and when its budget
    # is spent it fails forward (DEPROVISION, the shared side after an ENTERPRISE cut-over).
    forward_only_from: str | None = None
    _by_phase: Mapping[str, tuple[Step, ...]] = field(default_factory=dict, repr=False, compare=False)
    _by_name: Mapping[str, Step] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_phase = {phase: tuple(s for s in self.steps if s.phase == phase) for phase in self.phases}
        object.__setattr__(self, "_by_phase", by_phase)
        object.__setattr__(self, "_by_name", {s.name: s for s in self.steps})
        listed: set[str] = set()
        for step in self.steps:
            assert step.phase in by_phase, f"{self.key}: {step.name} is in an unknown phase {step.phase}"
            for name in step.after:
                assert name in listed and self._by_name[name].phase == step.phase, \
                    f"{self.key}: {step.name} waits for {name}, which is not an earlier step of its phase"
            listed.add(step.name)
        assert all(by_phase[phase] for phase in self.phases), f"{self.key}: a phase without steps"
        assert self.forward_only_from is None or self.forward_only_from in self.phases

    # --- the plan as a graph -----------------------------------------------------------------

    def steps_of(self, phase: str) -> tuple[Step, ...]:
        return self._by_phase[phase]

    def step(self, name: str) -> Step:
        return self._by_name[name]

    def has_step(self, name: str) -> bool:
        return name in self._by_name

    @property
    def step_names(self) -> tuple[str, ...]:
        return tuple(step.name for step in self.steps)

    @property
    def nominal_seconds(self) -> float:
        return sum(step.nominal_seconds for step in self.steps)

    def position(self, succeeded: Collection[str]) -> Position:
        """The phases done, the current one (the first with a step not yet succeeded), the rest."""
        for index, phase in enumerate(self.phases):
            if any(step.name not in succeeded for step in self._by_phase[phase]):
                return Position(self.phases[:index], phase, self.phases[index + 1:])
        return Position(self.phases, COMPLETED, ())

    def ready(self, phase: str, statuses: Mapping[str, str], *, claimable=("PENDING",)) -> list[str]:
        """Steps of `phase` in a claimable status whose dependencies have all succeeded."""
        return [step.name for step in self._by_phase[phase]
                if statuses.get(step.name) in claimable
                and all(statuses.get(name) == "SUCCEEDED" for name in step.after)]

    def is_forward_only(self, phase: str) -> bool:
        if self.forward_only_from is None:
            return False
        return self.phases.index(phase) >= self.phases.index(self.forward_only_from)

    def progress(self, done_seconds: float) -> int:
        """Percent of the nominal duration done (partial credit included); at most 99 (100: COMPLETED)."""
        return max(0, min(99, int(100 * done_seconds / self.nominal_seconds)))


# --- building plans ----------------------------------------------------------------------------


def step(name: str, phase: str, *after: str) -> Step:
    return Step(name=name, phase=phase, nominal_seconds=C.NOMINAL_SECONDS[name], after=tuple(after),
                compensation=C.COMPENSATIONS.get(name))


def plan_key(kind: str, tier: str, from_tier: str | None = None) -> str:
    if kind == Kind.CHANGE_TIER:
        return f"{kind}:{from_tier}->{tier}"
    return f"{kind}:{tier}"


PLANS: dict[str, Plan] = {}


def register(plan: Plan) -> Plan:
    assert plan.key == plan_key(plan.kind, plan.tier, plan.from_tier), plan.key
    assert plan.key not in PLANS, f"two plans for {plan.key}"
    missing = [s.name for s in plan.steps if s.name not in C.NOMINAL_SECONDS]
    assert not missing, f"{plan.key}: steps without a nominal duration: {missing}"
    PLANS[plan.key] = plan
    return plan


def plan_of(kind: str, tier: str, from_tier: str | None = None) -> Plan:
    """The plan of a job, by its kind, its tier (the target tier of a change) and its former tier."""
    return PLANS[plan_key(kind, tier, from_tier)]


def has_plan(kind: str, tier: str, from_tier: str | None = None) -> bool:
    return plan_key(kind, tier, from_tier) in PLANS


def plan_for(tier: str) -> Plan:
    """The provisioning plan of a tier (the registration's)."""
    return PLANS[plan_key(Kind.PROVISION, tier)]


def plan_of_job(job) -> Plan:
    """The plan of a job row (a ProvisioningJob, or anything with kind, tier and from_tier)."""
    return plan_of(job.kind, job.tier, job.from_tier)


# The plans themselves live with their operations; importing them registers them.
from provisioning.engine import plan_table  # noqa: E402,F401

ALL_STEP_NAMES: frozenset[str] = frozenset(name for plan in PLANS.values() for name in plan.step_names)
PROVISIONING_STEP_NAMES: frozenset[str] = frozenset(
    name for plan in PLANS.values() if plan.kind == Kind.PROVISION for name in plan.step_names)
