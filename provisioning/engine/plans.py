"""The tier plans, as data: phases in the seed's order, steps inside each phase.

A phase is a state of the seed's state machine (what the status API shows).
A step is one Celery task (one of the seed's operations). Steps of a phase run
as their `after` dependencies allow: a step waits only for the steps it names,
and only steps of the same phase may be named. Each step has the seed's
nominal duration (the middle of its range) and the compensation that undoes it.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True)
class Step:
    name: str
    phase: str
    nominal_seconds: float
    after: tuple[str, ...] = ()
    compensation: str | None = None  # what undoes it; None: nothing to undo


@dataclass(frozen=True)
class Plan:
    tier: str
    phases: tuple[str, ...]
    steps: tuple[Step, ...]

    def steps_of(self, phase: str) -> tuple[Step, ...]:
        return tuple(step for step in self.steps if step.phase == phase)

    def step(self, name: str) -> Step:
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(name)

    @property
    def step_names(self) -> tuple[str, ...]:
        return tuple(step.name for step in self.steps)

    @property
    def nominal_seconds(self) -> float:
        return sum(step.nominal_seconds for step in self.steps)

    def is_ready(self, step: Step, succeeded: set[str]) -> bool:
        """Every step of the earlier phases and every step it waits for has succeeded."""
        for phase in self.phases:
            if phase == step.phase:
                break
            if any(other.name not in succeeded for other in self.steps_of(phase)):
                return False
        return all(name in succeeded for name in step.after)

    def newly_ready(self, succeeded: set[str], just_succeeded: str) -> list[str]:
        """The steps that the success of `just_succeeded` made ready (and only those)."""
        before = succeeded - {just_succeeded}
        return [step.name for step in self.steps
                if step.name not in succeeded and self.is_ready(step, succeeded) and not self.is_ready(step, before)]

    def progress(self, succeeded: set[str]) -> int:
        """Percent of the nominal duration done; at most 99 (100 is for COMPLETED jobs)."""
        done = sum(step.nominal_seconds for step in self.steps if step.name in succeeded)
        return min(99, int(100 * done / self.nominal_seconds))


def _mid(low: float, high: float) -> float:
    return (low + high) / 2


# Nominal durations: the seed's ranges for its ten operations; our own estimates for the rest.
VALIDATE_INPUT = "VALIDATE_INPUT"
CONFIRM_TENANT_RECORD = "CONFIRM_TENANT_RECORD"
SELECT_SHARED_CLUSTER = "SELECT_SHARED_CLUSTER"
VALIDATE_SERVICE_PRINCIPAL = "VALIDATE_SERVICE_PRINCIPAL"
ACQUIRE_TERRAFORM_LOCK = "ACQUIRE_TERRAFORM_LOCK"
TERRAFORM_APPLY = "TERRAFORM_APPLY"
RELEASE_TERRAFORM_LOCK = "RELEASE_TERRAFORM_LOCK"
CREATE_NAMESPACE = "CREATE_NAMESPACE"
CONFIGURE_QUOTAS = "CONFIGURE_QUOTAS"
CONFIGURE_NETWORKING = "CONFIGURE_NETWORKING"
SETUP_DATABASE = "SETUP_DATABASE"
DEPLOY_CORE_SERVICES = "DEPLOY_CORE_SERVICES"
DEPLOY_DATA_SERVICES = "DEPLOY_DATA_SERVICES"
DEPLOY_INGRESS_CONTROLLER = "DEPLOY_INGRESS_CONTROLLER"
CREATE_DNS_ZONE = "CREATE_DNS_ZONE"
CREATE_TENANT_INGRESS = "CREATE_TENANT_INGRESS"
DEPLOY_MONITORING = "DEPLOY_MONITORING"
SETUP_OBSERVABILITY = "SETUP_OBSERVABILITY"
VERIFY_CONNECTIVITY = "VERIFY_CONNECTIVITY"

NOMINAL_SECONDS: dict[str, float] = {
    VALIDATE_INPUT: 1,
    CONFIRM_TENANT_RECORD: 1,
    SELECT_SHARED_CLUSTER: 2,
    VALIDATE_SERVICE_PRINCIPAL: 5,
    ACQUIRE_TERRAFORM_LOCK: 2,
    TERRAFORM_APPLY: 1200,
    RELEASE_TERRAFORM_LOCK: 1,
    CREATE_NAMESPACE: _mid(5, 30),
    CONFIGURE_QUOTAS: 5,
    CONFIGURE_NETWORKING: _mid(10, 30),
    SETUP_DATABASE: _mid(30, 120),
    DEPLOY_CORE_SERVICES: _mid(60, 300),
    DEPLOY_DATA_SERVICES: _mid(60, 300),
    DEPLOY_INGRESS_CONTROLLER: _mid(30, 120),
    CREATE_DNS_ZONE: _mid(10, 60),
    CREATE_TENANT_INGRESS: _mid(10, 30),
    DEPLOY_MONITORING: _mid(30, 60),
    SETUP_OBSERVABILITY: _mid(10, 30),
    VERIFY_CONNECTIVITY: 15,
}

COMPENSATIONS: dict[str, str | None] = {
    VALIDATE_INPUT: None,
    CONFIRM_TENANT_RECORD: None,
    SELECT_SHARED_CLUSTER: "release the cluster slot",
    VALIDATE_SERVICE_PRINCIPAL: None,
    ACQUIRE_TERRAFORM_LOCK: "release the Terraform state lock",
    TERRAFORM_APPLY: "terraform destroy",
    RELEASE_TERRAFORM_LOCK: None,
    CREATE_NAMESPACE: "delete the namespace and its RBAC",
    CONFIGURE_QUOTAS: "delete the ResourceQuota and LimitRange",
    CONFIGURE_NETWORKING: "delete the NetworkPolicies",
    SETUP_DATABASE: "drop the tenant's schema and role",
    DEPLOY_CORE_SERVICES: "uninstall the core-services release",
    DEPLOY_DATA_SERVICES: "uninstall the data-services release",
    DEPLOY_INGRESS_CONTROLLER: "uninstall the ingress-controller release",
    CREATE_DNS_ZONE: "remove the NS delegation, then the zone",
    CREATE_TENANT_INGRESS: "delete the Ingress and its certificate",
    DEPLOY_MONITORING: "uninstall the monitoring release",
    SETUP_OBSERVABILITY: "remove the log and trace pipelines",
    VERIFY_CONNECTIVITY: None,
}


def _step(name: str, phase: str, after: tuple[str, ...] = ()) -> Step:
    return Step(name=name, phase=phase, nominal_seconds=NOMINAL_SECONDS[name], after=after,
                compensation=COMPENSATIONS[name])


SHARED_PHASES = (
    "VALIDATING_INPUT",
    "CREATING_TENANT_RECORD",
    "ALLOCATING_SHARED_CLUSTER",
    "CONFIGURING_QUOTAS",
    "DEPLOYING_SERVICES",
    "VERIFYING_CONNECTIVITY",
)
DEDICATED_PHASES = (
    "VALIDATING_INPUT",
    "CREATING_TENANT_RECORD",
    "VALIDATING_SERVICE_PRINCIPAL",
    "ACQUIRING_TERRAFORM_LOCK",
    "PROVISIONING_INFRASTRUCTURE",
    "CREATING_KUBERNETES_RESOURCES",
    "DEPLOYING_SERVICES",
    "VERIFYING_CONNECTIVITY",
)

_FULL_SERVICES = (
    _step(SETUP_DATABASE, "DEPLOYING_SERVICES"),
    _step(DEPLOY_CORE_SERVICES, "DEPLOYING_SERVICES", after=(SETUP_DATABASE,)),
    _step(DEPLOY_DATA_SERVICES, "DEPLOYING_SERVICES", after=(DEPLOY_CORE_SERVICES,)),
    _step(DEPLOY_INGRESS_CONTROLLER, "DEPLOYING_SERVICES"),
    _step(CREATE_DNS_ZONE, "DEPLOYING_SERVICES"),
    _step(CREATE_TENANT_INGRESS, "DEPLOYING_SERVICES",
          after=(DEPLOY_CORE_SERVICES, DEPLOY_INGRESS_CONTROLLER, CREATE_DNS_ZONE)),
    _step(DEPLOY_MONITORING, "DEPLOYING_SERVICES"),
    _step(SETUP_OBSERVABILITY, "DEPLOYING_SERVICES", after=(DEPLOY_MONITORING,)),
)

PLANS: dict[str, Plan] = {
    "FREE": Plan(
        tier="FREE",
        phases=SHARED_PHASES,
        steps=(
            _step(VALIDATE_INPUT, "VALIDATING_INPUT"),
            _step(CONFIRM_TENANT_RECORD, "CREATING_TENANT_RECORD"),
            _step(SELECT_SHARED_CLUSTER, "ALLOCATING_SHARED_CLUSTER"),
            _step(CREATE_NAMESPACE, "ALLOCATING_SHARED_CLUSTER", after=(SELECT_SHARED_CLUSTER,)),
            _step(CONFIGURE_QUOTAS, "CONFIGURING_QUOTAS"),
            _step(CONFIGURE_NETWORKING, "CONFIGURING_QUOTAS"),
            # The subset: the shared ingress controller and the shared DNS zone serve FREE tenants.
            _step(SETUP_DATABASE, "DEPLOYING_SERVICES"),
            _step(DEPLOY_CORE_SERVICES, "DEPLOYING_SERVICES", after=(SETUP_DATABASE,)),
            _step(CREATE_TENANT_INGRESS, "DEPLOYING_SERVICES", after=(DEPLOY_CORE_SERVICES,)),
            _step(SETUP_OBSERVABILITY, "DEPLOYING_SERVICES"),
            _step(VERIFY_CONNECTIVITY, "VERIFYING_CONNECTIVITY"),
        ),
    ),
    "PROFESSIONAL": Plan(
        tier="PROFESSIONAL",
        phases=SHARED_PHASES,
        steps=(
            _step(VALIDATE_INPUT, "VALIDATING_INPUT"),
            _step(CONFIRM_TENANT_RECORD, "CREATING_TENANT_RECORD"),
            _step(SELECT_SHARED_CLUSTER, "ALLOCATING_SHARED_CLUSTER"),
            _step(CREATE_NAMESPACE, "ALLOCATING_SHARED_CLUSTER", after=(SELECT_SHARED_CLUSTER,)),
            _step(CONFIGURE_QUOTAS, "CONFIGURING_QUOTAS"),
            _step(CONFIGURE_NETWORKING, "CONFIGURING_QUOTAS"),
            *_FULL_SERVICES,
            _step(VERIFY_CONNECTIVITY, "VERIFYING_CONNECTIVITY"),
        ),
    ),
    "ENTERPRISE": Plan(
        tier="ENTERPRISE",
        phases=DEDICATED_PHASES,
        steps=(
            _step(VALIDATE_INPUT, "VALIDATING_INPUT"),
            _step(CONFIRM_TENANT_RECORD, "CREATING_TENANT_RECORD"),
            _step(VALIDATE_SERVICE_PRINCIPAL, "VALIDATING_SERVICE_PRINCIPAL"),
            _step(ACQUIRE_TERRAFORM_LOCK, "ACQUIRING_TERRAFORM_LOCK"),
            _step(TERRAFORM_APPLY, "PROVISIONING_INFRASTRUCTURE"),
            _step(RELEASE_TERRAFORM_LOCK, "PROVISIONING_INFRASTRUCTURE", after=(TERRAFORM_APPLY,)),
            _step(CREATE_NAMESPACE, "CREATING_KUBERNETES_RESOURCES"),
            _step(CONFIGURE_QUOTAS, "CREATING_KUBERNETES_RESOURCES", after=(CREATE_NAMESPACE,)),
            _step(CONFIGURE_NETWORKING, "CREATING_KUBERNETES_RESOURCES", after=(CREATE_NAMESPACE,)),
            *_FULL_SERVICES,
            _step(VERIFY_CONNECTIVITY, "VERIFYING_CONNECTIVITY"),
        ),
    ),
}

ALL_STEP_NAMES: frozenset[str] = frozenset(name for plan in PLANS.values() for name in plan.step_names)


@lru_cache(maxsize=None)
def plan_for(tier: str) -> Plan:
    return PLANS[tier]
