"""`provision_plan` prints, for each tier, manifests that Kubernetes would accept, with REFERENCE.md's quotas."""
from __future__ import annotations

import io

import kubernetes_validate
import pytest
import yaml
from django.core.management import CommandError, call_command

from provisioning.engine.spec import QUOTAS

KUBE_VERSION = "1.33"

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("tier", ["FREE", "PROFESSIONAL", "ENTERPRISE"])
def test_every_printed_manifest_validates_and_quotas_match_the_reference(tier, monkeypatch):
    import sys

    buffer = io.StringIO()
    monkeypatch.setattr(sys, "stdout", buffer)
    call_command("provision_plan", tier=tier, slug="acme")
    text = buffer.getvalue()
    documents = [doc for doc in yaml.safe_load_all(text) if doc]
    kinds = [doc["kind"] for doc in documents]
    for doc in documents:
        if doc["apiVersion"].startswith("monitoring.coreos.com"):
            continue  # a CRD (PrometheusRule): no built-in schema to validate against
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
    assert {"Namespace", "ResourceQuota", "LimitRange", "NetworkPolicy", "Ingress", "Role", "RoleBinding"} <= set(kinds)
    quota = next(doc for doc in documents if doc["kind"] == "ResourceQuota")
    assert quota["spec"]["hard"] == QUOTAS[tier]
    limits = next(doc for doc in documents if doc["kind"] == "LimitRange")["spec"]["limits"][0]
    assert limits["default"] == {"cpu": "500m", "memory": "512Mi"} and limits["max"] == {"cpu": "2", "memory": "4Gi"}
    assert all(doc["metadata"].get("namespace") in (None, "tenant-acme") for doc in documents)
    if tier == "FREE":
        assert "Helm release acme-data" not in text and "Azure DNS" not in text
    else:
        assert "Helm release acme-data: chart data-services" in text and "Azure DNS: child zone acme.matih.ai" in text
    assert ("Terraform workspace tenant-acme" in text) == (tier == "ENTERPRISE")


def test_plan_refuses_a_bad_slug():
    with pytest.raises(CommandError):
        call_command("provision_plan", tier="FREE", slug="Bad_Slug")


def _plan_text(monkeypatch, **options) -> str:
    import sys

    buffer = io.StringIO()
    monkeypatch.setattr(sys, "stdout", buffer)
    call_command("provision_plan", slug="acme", **options)
    return buffer.getvalue()


def test_a_tier_change_previews_its_plan_and_the_manifests_of_the_tier_it_ends_at(monkeypatch):
    text = _plan_text(monkeypatch, operation="CHANGE_TIER", from_tier="FREE", to_tier="PROFESSIONAL")
    assert "phases VALIDATING_CHANGE -> CONFIGURING_QUOTAS -> DEPLOYING_SERVICES -> VERIFYING_CONNECTIVITY" in text
    assert "SWITCH_TENANT_INGRESS after UPGRADE_CORE_SERVICES, DEPLOY_INGRESS_CONTROLLER, CREATE_DNS_ZONE" in text
    assert "undone by: put the former tier's quotas back" in text
    documents = [doc for doc in yaml.safe_load_all(text) if doc]
    quota = next(doc for doc in documents if doc["kind"] == "ResourceQuota")
    assert quota["spec"]["hard"] == QUOTAS["PROFESSIONAL"]
    for doc in documents:
        if not doc["apiVersion"].startswith("monitoring.coreos.com"):
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
    assert "Helm release acme-data: chart data-services" in text and "Azure DNS: child zone acme." in text


@pytest.mark.parametrize("operation, steps", [
    ("SUSPEND", ["SCALE_DOWN_WORKLOADS", "SUSPEND_QUOTA after SCALE_DOWN_WORKLOADS", "BLOCK_INGRESS"]),
    ("ACTIVATE", ["UNBLOCK_INGRESS", "SCALE_UP_WORKLOADS after RESTORE_QUOTA", "VERIFY_CONNECTIVITY"]),
    ("DEPROVISION", ["EXPORT_TENANT_DATA", "DESTROY_DEDICATED_CLUSTER after DELETE_TENANT_NAMESPACE", "SCAN_LEFTOVERS"]),
])
def test_every_operation_previews_its_phases_and_steps(monkeypatch, operation, steps):
    text = _plan_text(monkeypatch, operation=operation, tier="ENTERPRISE")
    assert f"{operation} ({operation}:ENTERPRISE)" in text
    for step in steps:
        assert f"#   {step}" in text, text
    if operation == "DEPROVISION":
        assert "(forward only: retried, never undone)" in text and "undone by" not in text


def test_a_change_with_no_plan_is_refused_with_the_reason(monkeypatch):
    with pytest.raises(CommandError, match="ENTERPRISE tenant cannot move to a shared tier"):
        _plan_text(monkeypatch, operation="CHANGE_TIER", from_tier="ENTERPRISE", to_tier="FREE")
    with pytest.raises(CommandError, match="CHANGE_TIER takes --from and --to"):
        _plan_text(monkeypatch, operation="CHANGE_TIER", tier="FREE")


def test_a_preview_prints_only_the_plan_no_sdk_chatter(caplog):
    """The Azure SDK's credential probes log at INFO; a preview (and any command) shows none of it."""
    import logging

    with caplog.at_level(logging.DEBUG):
        call_command("provision_plan", operation="CHANGE_TIER", from_tier="FREE", to_tier="PROFESSIONAL",
                     slug="acme", stdout=io.StringIO())
        logging.getLogger("azure.identity._credentials.environment").info("No environment configuration found.")
    assert logging.getLogger("azure.identity").getEffectiveLevel() >= logging.WARNING
    assert not [r for r in caplog.records if r.name.startswith("azure") and r.levelno < logging.WARNING]
