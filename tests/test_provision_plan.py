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
