"""The steps' names, nominal durations and what undoes each: the seed's table for its ten
operations, our estimates for the rest. Plans (provisioning.engine.plan_table) are built from
these names; what each step does is provisioning.engine.steps."""
from __future__ import annotations


def _mid(low: float, high: float) -> float:
    return (low + high) / 2


# --- provisioning ------------------------------------------------------------------------------
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
