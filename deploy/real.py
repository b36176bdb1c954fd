"""The real backend (MATIH_INFRA_BACKEND=azure): every driver built from settings.

`real_backend(settings)` returns one object with the attributes the step layer
uses (kubernetes, helm, dns, terraform, lock, database, credentials,
observability, verify), like deploy.simulated.SimulatedCloud. Settings missing
from `settings` fall back to deploy.settings (read from the environment), so any
object with attributes works, Django's settings included.

Backends are cached per process and configuration: the Kubernetes clients keep
one connection pool per cluster across jobs.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

from deploy import settings as defaults
from deploy.credentials import AzureServicePrincipals
from deploy.database import PostgresTenantDatabases, database_address
from deploy.dns import AzureDnsDriver
from deploy.helm import HelmReleaseDriver
from deploy.interfaces import ClusterRef
from deploy.kubernetes import KubernetesClusterDriver
from deploy.locks import RedisStateLock
from deploy.observability import ConfigMapPipelines
from deploy.terraform import TerraformCliDriver
from deploy.verify import HttpsVerifier

NAMES = [name for name in defaults.__all__] + ["DATABASE_URL", "REDIS_URL"]


@dataclass
class RealCloud:
    """The real drivers, one attribute per interface (see deploy.interfaces)."""

    kubernetes: KubernetesClusterDriver
    helm: HelmReleaseDriver
    dns: AzureDnsDriver
    terraform: TerraformCliDriver
    lock: RedisStateLock
    database: PostgresTenantDatabases
    credentials: AzureServicePrincipals
    observability: ConfigMapPipelines
    verify: HttpsVerifier
    name: str = "azure"

    def before_step(self, step: str, attempt: int, nominal_seconds: float) -> None:
        """Real systems take the time they take and fail on their own: nothing to add."""


_cache: dict[tuple, RealCloud] = {}
_cache_lock = threading.Lock()


def _config(settings) -> dict:
    config = {name: getattr(settings, name, getattr(defaults, name, "")) for name in NAMES}
    config["MATIH_DATAPLANE_DATABASE_URL"] = config["MATIH_DATAPLANE_DATABASE_URL"] or config["DATABASE_URL"]
    return config


def real_backend(settings) -> RealCloud:
    config = _config(settings)
    key = tuple(sorted((name, repr(value)) for name, value in config.items()))
    with _cache_lock:
        backend = _cache.get(key)
        if backend is None:
            backend = _cache[key] = build_backend(config)
        return backend


def _azure_credential(config: dict):
    """The platform's own Azure identity (for DNS): a service principal when configured, else the default chain."""
    from azure.core.pipeline.transport import RequestsTransport
    from azure.identity import ClientSecretCredential, DefaultAzureCredential

    if config["MATIH_AZURE_CLIENT_ID"] and config["MATIH_AZURE_CLIENT_SECRET"] and config["MATIH_AZURE_TENANT_ID"]:
        authority = config["MATIH_AZURE_AUTHORITY"]
        return ClientSecretCredential(
            config["MATIH_AZURE_TENANT_ID"], config["MATIH_AZURE_CLIENT_ID"], config["MATIH_AZURE_CLIENT_SECRET"],
            authority=authority, disable_instance_discovery=authority != "login.microsoftonline.com",
            transport=RequestsTransport(connection_verify=config["MATIH_AZURE_CA_BUNDLE"] or True),
        )
    return DefaultAzureCredential()


def build_backend(config: dict) -> RealCloud:
    shared_cluster = ClusterRef(name=config["MATIH_SHARED_CLUSTER_NAME"], api_endpoint=config["MATIH_KUBE_API"],
                                credentials_ref=config["MATIH_KUBECONFIG"])
    kubernetes = KubernetesClusterDriver(
        shared_cluster, request_timeout=float(config["MATIH_KUBE_REQUEST_TIMEOUT"]),
        ingress_namespace=config["MATIH_INGRESS_NAMESPACE"],
        shared_ingress_class=config["MATIH_SHARED_INGRESS_CLASS"],
        monitoring_namespace=config["MATIH_MONITORING_NAMESPACE"],
        cluster_issuer=config["MATIH_CLUSTER_ISSUER"],
    )
    dataplane_url = config["MATIH_DATAPLANE_DATABASE_URL"]
    db_host, db_port = database_address(dataplane_url)
    helm = HelmReleaseDriver(
        config["MATIH_CHARTS_DIR"], default_cluster=shared_cluster, mode=config["MATIH_HELM_MODE"],
        helm_bin=config["MATIH_HELM_BIN"], timeout=int(config["MATIH_HELM_TIMEOUT"]),
        wait=bool(config["MATIH_HELM_WAIT"]),
        platform_values={"database": {"host": db_host, "port": db_port}},
    )
    arm = config["MATIH_AZURE_ARM_ENDPOINT"].rstrip("/")
    verify_tls = config["MATIH_AZURE_CA_BUNDLE"] or True
    dns = AzureDnsDriver(
        subscription_id=config["MATIH_AZURE_SUBSCRIPTION_ID"], resource_group=config["MATIH_AZURE_RESOURCE_GROUP"],
        credential=_azure_credential(config), base_url=arm, connection_verify=verify_tls,
        ttl=int(config["MATIH_DNS_TTL"]),
    )
    # The tenant's Terraform state lock: the step layer takes and renews it (one lock, one renewer).
    lock = RedisStateLock(config["REDIS_URL"])
    terraform_env = {"ARM_SUBSCRIPTION_ID": config["MATIH_TERRAFORM_SUBSCRIPTION_ID"]
                     or config["MATIH_AZURE_SUBSCRIPTION_ID"]}
    if config["MATIH_AZURE_CLIENT_ID"]:
        terraform_env.update(ARM_CLIENT_ID=config["MATIH_AZURE_CLIENT_ID"],
                             ARM_CLIENT_SECRET=config["MATIH_AZURE_CLIENT_SECRET"],
                             ARM_TENANT_ID=config["MATIH_AZURE_TENANT_ID"])
    # No lock of the driver's own: the step layer holds `lock` (one state lock, one renewer)
    # around the apply or destroy; Terraform's own state lock waits MATIH_TERRAFORM_LOCK_WAIT.
    terraform = TerraformCliDriver(
        module_dir=config["MATIH_TERRAFORM_MODULE"], workdir=config["MATIH_TERRAFORM_WORKDIR"],
        binary=config["MATIH_TERRAFORM_BIN"], lock_timeout=float(config["MATIH_TERRAFORM_LOCK_WAIT"]),
        timeout=float(config["MATIH_TERRAFORM_TIMEOUT"]),
        env=terraform_env, default_variables={"subscription_id": terraform_env["ARM_SUBSCRIPTION_ID"]},
    )
    return RealCloud(
        kubernetes=kubernetes,
        helm=helm,
        dns=dns,
        terraform=terraform,
        lock=lock,
        database=PostgresTenantDatabases(dataplane_url, pg_dump=config["MATIH_PG_DUMP"]),
        credentials=AzureServicePrincipals(authority=config["MATIH_AZURE_AUTHORITY"], arm_endpoint=arm,
                                           connection_verify=verify_tls),
        observability=ConfigMapPipelines(kubernetes, otlp_endpoint=config["MATIH_OTEL_ENDPOINT"],
                                         log_host=config["MATIH_LOG_HOST"], log_port=int(config["MATIH_LOG_PORT"])),
        verify=HttpsVerifier(kubernetes, timeout=float(config["MATIH_VERIFY_TIMEOUT"]),
                             ca_bundle=config["MATIH_VERIFY_CA_BUNDLE"]),
    )
