"""Every plan of every operation, as data (see provisioning.engine.plans for the model).

Provisioning: phase order per tier is exactly the seed's state machine (DESIGN.md section 3).
"""
from __future__ import annotations

from provisioning.engine import steps_catalog as C
from provisioning.engine.plans import Kind, Plan, register, step

# --- PROVISION ------------------------------------------------------------------------------------

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


def full_services(phase: str = "DEPLOYING_SERVICES") -> tuple:
    """The eight seed operations of the PROVISIONING and ENTERPRISE tiers, with their dependencies."""
    return (
        step(C.SETUP_DATABASE, phase),
        step(C.DEPLOY_CORE_SERVICES, phase, C.SETUP_DATABASE),
        step(C.DEPLOY_DATA_SERVICES, phase, C.DEPLOY_CORE_SERVICES),
        step(C.DEPLOY_INGRESS_CONTROLLER, phase),
        step(C.CREATE_DNS_ZONE, phase),
        step(C.CREATE_TENANT_INGRESS, phase, C.DEPLOY_CORE_SERVICES, C.DEPLOY_INGRESS_CONTROLLER, C.CREATE_DNS_ZONE),
        step(C.DEPLOY_MONITORING, phase),
        step(C.SETUP_OBSERVABILITY, phase, C.DEPLOY_MONITORING),
    )


def _shared_start() -> tuple:
    return (
        step(C.VALIDATE_INPUT, "VALIDATING_INPUT"),
        step(C.CONFIRM_TENANT_RECORD, "CREATING_TENANT_RECORD"),
        step(C.SELECT_SHARED_CLUSTER, "ALLOCATING_SHARED_CLUSTER"),
        step(C.CREATE_NAMESPACE, "ALLOCATING_SHARED_CLUSTER", C.SELECT_SHARED_CLUSTER),
        step(C.CONFIGURE_QUOTAS, "CONFIGURING_QUOTAS"),
        step(C.CONFIGURE_NETWORKING, "CONFIGURING_QUOTAS"),
    )


register(Plan(
    key="PROVISION:FREE", kind=Kind.PROVISION, tier="FREE", phases=SHARED_PHASES, outcome="provisioned",
    steps=(
        *_shared_start(),
        # The subset: the shared ingress controller and the shared DNS zone serve FREE tenants.
        step(C.SETUP_DATABASE, "DEPLOYING_SERVICES"),
        step(C.DEPLOY_CORE_SERVICES, "DEPLOYING_SERVICES", C.SETUP_DATABASE),
        step(C.CREATE_TENANT_INGRESS, "DEPLOYING_SERVICES", C.DEPLOY_CORE_SERVICES),
        step(C.SETUP_OBSERVABILITY, "DEPLOYING_SERVICES"),
        step(C.VERIFY_CONNECTIVITY, "VERIFYING_CONNECTIVITY"),
    ),
))

register(Plan(
    key="PROVISION:PROFESSIONAL", kind=Kind.PROVISION, tier="PROFESSIONAL", phases=SHARED_PHASES,
    outcome="provisioned",
    steps=(*_shared_start(), *full_services(), step(C.VERIFY_CONNECTIVITY, "VERIFYING_CONNECTIVITY")),
))

register(Plan(
    key="PROVISION:ENTERPRISE", kind=Kind.PROVISION, tier="ENTERPRISE", phases=DEDICATED_PHASES,
    outcome="provisioned",
    steps=(
        step(C.VALIDATE_INPUT, "VALIDATING_INPUT"),
        step(C.CONFIRM_TENANT_RECORD, "CREATING_TENANT_RECORD"),
        step(C.VALIDATE_SERVICE_PRINCIPAL, "VALIDATING_SERVICE_PRINCIPAL"),
        step(C.ACQUIRE_TERRAFORM_LOCK, "ACQUIRING_TERRAFORM_LOCK"),
        step(C.TERRAFORM_APPLY, "PROVISIONING_INFRASTRUCTURE"),
        step(C.RELEASE_TERRAFORM_LOCK, "PROVISIONING_INFRASTRUCTURE", C.TERRAFORM_APPLY),
        step(C.CREATE_NAMESPACE, "CREATING_KUBERNETES_RESOURCES"),
        step(C.CONFIGURE_QUOTAS, "CREATING_KUBERNETES_RESOURCES", C.CREATE_NAMESPACE),
        step(C.CONFIGURE_NETWORKING, "CREATING_KUBERNETES_RESOURCES", C.CREATE_NAMESPACE),
        *full_services(),
        step(C.VERIFY_CONNECTIVITY, "VERIFYING_CONNECTIVITY"),
    ),
))
