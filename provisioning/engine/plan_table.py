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


def dedicated_cluster() -> tuple:
    """The ENTERPRISE tenant's own cluster: Terraform under its state lock, then the tenant's
    namespace, quotas and network policies on it (provisioning, and the move onto ENTERPRISE)."""
    return (
        step(C.ACQUIRE_TERRAFORM_LOCK, "ACQUIRING_TERRAFORM_LOCK"),
        step(C.TERRAFORM_APPLY, "PROVISIONING_INFRASTRUCTURE"),
        step(C.RELEASE_TERRAFORM_LOCK, "PROVISIONING_INFRASTRUCTURE", C.TERRAFORM_APPLY),
        step(C.CREATE_NAMESPACE, "CREATING_KUBERNETES_RESOURCES"),
        step(C.CONFIGURE_QUOTAS, "CREATING_KUBERNETES_RESOURCES", C.CREATE_NAMESPACE),
        step(C.CONFIGURE_NETWORKING, "CREATING_KUBERNETES_RESOURCES", C.CREATE_NAMESPACE),
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
        *dedicated_cluster(),
        *full_services(),
        step(C.VERIFY_CONNECTIVITY, "VERIFYING_CONNECTIVITY"),
    ),
))


# --- CHANGE_TIER ------------------------------------------------------------------------------------
# Between the shared tiers, the delta only; onto ENTERPRISE, a dedicated cluster built beside the
# shared one, the data copied and verified, the DNS cut over and verified, and only then the
# shared side decommissioned (forward only: once the tenant runs on its cluster, nothing goes back).

DELTA_PHASES = ("VALIDATING_CHANGE", "CONFIGURING_QUOTAS", "DEPLOYING_SERVICES", "VERIFYING_CONNECTIVITY")

register(Plan(
    key="CHANGE_TIER:FREE->PROFESSIONAL", kind=Kind.CHANGE_TIER, tier="PROFESSIONAL", from_tier="FREE",
    phases=DELTA_PHASES, outcome="tier_changed",
    steps=(
        step(C.VALIDATE_TIER_CHANGE, "VALIDATING_CHANGE"),
        step(C.APPLY_TIER_QUOTAS, "CONFIGURING_QUOTAS"),
        step(C.APPLY_TIER_NETWORKING, "CONFIGURING_QUOTAS"),
        step(C.UPGRADE_CORE_SERVICES, "DEPLOYING_SERVICES"),
        step(C.DEPLOY_DATA_SERVICES, "DEPLOYING_SERVICES", C.UPGRADE_CORE_SERVICES),
        step(C.DEPLOY_INGRESS_CONTROLLER, "DEPLOYING_SERVICES"),
        step(C.CREATE_DNS_ZONE, "DEPLOYING_SERVICES"),
        step(C.SWITCH_TENANT_INGRESS, "DEPLOYING_SERVICES",
             C.UPGRADE_CORE_SERVICES, C.DEPLOY_INGRESS_CONTROLLER, C.CREATE_DNS_ZONE),
        step(C.DEPLOY_MONITORING, "DEPLOYING_SERVICES"),
        step(C.VERIFY_CONNECTIVITY, "VERIFYING_CONNECTIVITY"),
    ),
))

register(Plan(
    key="CHANGE_TIER:PROFESSIONAL->FREE", kind=Kind.CHANGE_TIER, tier="FREE", from_tier="PROFESSIONAL",
    phases=DELTA_PHASES, outcome="tier_changed",
    steps=(
        step(C.VALIDATE_TIER_CHANGE, "VALIDATING_CHANGE"),
        step(C.APPLY_TIER_QUOTAS, "CONFIGURING_QUOTAS"),
        # Traffic moves to the shared controller before the tenant's own goes; the policy that
        # let the outside reach that controller goes last.
        step(C.SWITCH_TENANT_INGRESS, "DEPLOYING_SERVICES"),
        step(C.REMOVE_INGRESS_CONTROLLER, "DEPLOYING_SERVICES", C.SWITCH_TENANT_INGRESS),
        step(C.REMOVE_DNS_ZONE, "DEPLOYING_SERVICES", C.SWITCH_TENANT_INGRESS),
        step(C.REMOVE_DATA_SERVICES, "DEPLOYING_SERVICES"),
        step(C.REMOVE_MONITORING, "DEPLOYING_SERVICES"),
        step(C.UPGRADE_CORE_SERVICES, "DEPLOYING_SERVICES", C.REMOVE_DATA_SERVICES),
        step(C.APPLY_TIER_NETWORKING, "DEPLOYING_SERVICES", C.REMOVE_INGRESS_CONTROLLER),
        step(C.VERIFY_CONNECTIVITY, "VERIFYING_CONNECTIVITY"),
    ),
))

TO_DEDICATED_PHASES = (
    "VALIDATING_SERVICE_PRINCIPAL", "ACQUIRING_TERRAFORM_LOCK", "PROVISIONING_INFRASTRUCTURE",
    "CREATING_KUBERNETES_RESOURCES", "DEPLOYING_SERVICES", "MIGRATING_DATA", "CUTTING_OVER",
    "VERIFYING_CONNECTIVITY", "DECOMMISSIONING_SHARED",
)


def _to_dedicated(from_tier: str) -> Plan:
    return Plan(
        key=f"CHANGE_TIER:{from_tier}->ENTERPRISE", kind=Kind.CHANGE_TIER, tier="ENTERPRISE", from_tier=from_tier,
        phases=TO_DEDICATED_PHASES, outcome="tier_changed", forward_only_from="DECOMMISSIONING_SHARED",
        steps=(
            step(C.VALIDATE_TIER_CHANGE, "VALIDATING_SERVICE_PRINCIPAL"),
            step(C.VALIDATE_SERVICE_PRINCIPAL, "VALIDATING_SERVICE_PRINCIPAL", C.VALIDATE_TIER_CHANGE),
            *dedicated_cluster(),
            # The services of the dedicated cluster; its database comes with the data, its DNS
            # with the cut-over (the shared tenant keeps both until then).
            step(C.DEPLOY_CORE_SERVICES, "DEPLOYING_SERVICES"),
            step(C.DEPLOY_DATA_SERVICES, "DEPLOYING_SERVICES", C.DEPLOY_CORE_SERVICES),
            step(C.DEPLOY_INGRESS_CONTROLLER, "DEPLOYING_SERVICES"),
            step(C.CREATE_TENANT_INGRESS, "DEPLOYING_SERVICES", C.DEPLOY_CORE_SERVICES, C.DEPLOY_INGRESS_CONTROLLER),
            step(C.DEPLOY_MONITORING, "DEPLOYING_SERVICES"),
            step(C.SETUP_OBSERVABILITY, "DEPLOYING_SERVICES", C.DEPLOY_MONITORING),
            step(C.FREEZE_SHARED_WRITES, "MIGRATING_DATA"),
            step(C.SETUP_DEDICATED_DATABASE, "MIGRATING_DATA", C.FREEZE_SHARED_WRITES),
            step(C.COPY_TENANT_DATA, "MIGRATING_DATA", C.SETUP_DEDICATED_DATABASE),
            step(C.CUT_OVER_DNS, "CUTTING_OVER"),
            step(C.VERIFY_CONNECTIVITY, "VERIFYING_CONNECTIVITY"),
            step(C.REMOVE_SHARED_NAMESPACE, "DECOMMISSIONING_SHARED"),
            step(C.DROP_SHARED_SCHEMA, "DECOMMISSIONING_SHARED"),
            step(C.RELEASE_SHARED_SLOT, "DECOMMISSIONING_SHARED", C.REMOVE_SHARED_NAMESPACE),
        ),
    )


register(_to_dedicated("FREE"))
register(_to_dedicated("PROFESSIONAL"))
# ENTERPRISE -> a shared tier has no plan: refused (409 downgrade_unsupported).

# --- SUSPEND and ACTIVATE -------------------------------------------------------------------------

for _tier in ("FREE", "PROFESSIONAL", "ENTERPRISE"):
    register(Plan(
        key=f"SUSPEND:{_tier}", kind=Kind.SUSPEND, tier=_tier, phases=("SCALING_DOWN", "BLOCKING_ACCESS"),
        outcome="suspended",
        steps=(
            step(C.SCALE_DOWN_WORKLOADS, "SCALING_DOWN"),
            step(C.SUSPEND_QUOTA, "SCALING_DOWN", C.SCALE_DOWN_WORKLOADS),
            step(C.BLOCK_INGRESS, "BLOCKING_ACCESS"),
        ),
    ))
    register(Plan(
        key=f"ACTIVATE:{_tier}", kind=Kind.ACTIVATE, tier=_tier,
        phases=("RESTORING_ACCESS", "SCALING_UP", "VERIFYING_CONNECTIVITY"), outcome="activated",
        steps=(
            step(C.UNBLOCK_INGRESS, "RESTORING_ACCESS"),
            step(C.RESTORE_QUOTA, "SCALING_UP"),
            step(C.SCALE_UP_WORKLOADS, "SCALING_UP", C.RESTORE_QUOTA),  # the quota first: pods=0 admits none
            step(C.VERIFY_CONNECTIVITY, "VERIFYING_CONNECTIVITY"),
        ),
    ))

# --- DEPROVISION --------------------------------------------------------------------------------------
# Forward only: a failure is retried with backoff; when the budget is spent the job is FAILED with
# what is left, the tenant stays PENDING_DELETION, and `retry` goes on from there.

DEPROVISION_PHASES = ("EXPORTING_DATA", "TEARING_DOWN", "SCANNING_LEFTOVERS")
_T = "TEARING_DOWN"


def _teardown(tier: str) -> tuple:
    """Everything the tenant has, in reverse dependency order, side by side where independent."""
    shared = (
        step(C.REMOVE_TENANT_INGRESS, _T),
        step(C.REMOVE_OBSERVABILITY, _T),
    )
    if tier == "FREE":
        services = (
            step(C.REMOVE_CORE_SERVICES, _T, C.REMOVE_TENANT_INGRESS),
            step(C.DROP_TENANT_DATABASE, _T, C.REMOVE_CORE_SERVICES),
        )
        before_namespace = (C.DROP_TENANT_DATABASE, C.REMOVE_OBSERVABILITY)
    else:
        services = (
            step(C.REMOVE_DNS_ZONE, _T, C.REMOVE_TENANT_INGRESS),
            step(C.REMOVE_INGRESS_CONTROLLER, _T, C.REMOVE_TENANT_INGRESS),
            step(C.REMOVE_DATA_SERVICES, _T),
            step(C.REMOVE_MONITORING, _T, C.REMOVE_OBSERVABILITY),
            step(C.REMOVE_CORE_SERVICES, _T, C.REMOVE_TENANT_INGRESS, C.REMOVE_DATA_SERVICES),
            step(C.DROP_TENANT_DATABASE, _T, C.REMOVE_CORE_SERVICES),
        )
        before_namespace = (C.DROP_TENANT_DATABASE, C.REMOVE_INGRESS_CONTROLLER, C.REMOVE_MONITORING,
                            C.REMOVE_DNS_ZONE)
    namespace = (
        step(C.DELETE_TENANT_NAMESPACE, _T, *before_namespace),
        step(C.RELEASE_CLUSTER_SLOT, _T, C.DELETE_TENANT_NAMESPACE),
    )
    cluster = (step(C.DESTROY_DEDICATED_CLUSTER, _T, C.DELETE_TENANT_NAMESPACE),) if tier == "ENTERPRISE" else ()
    return (*shared, *services, *namespace, *cluster)


for _tier in ("FREE", "PROFESSIONAL", "ENTERPRISE"):
    register(Plan(
        key=f"DEPROVISION:{_tier}", kind=Kind.DEPROVISION, tier=_tier, phases=DEPROVISION_PHASES,
        outcome="deprovisioned", forward_only_from="EXPORTING_DATA",
        steps=(
            step(C.EXPORT_TENANT_DATA, "EXPORTING_DATA"),
            *_teardown(_tier),
            step(C.SCAN_LEFTOVERS, "SCANNING_LEFTOVERS"),
        ),
    ))
