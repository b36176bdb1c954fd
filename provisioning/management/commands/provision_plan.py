"""Print what the real backend would apply for a tenant, touching nothing.

Every Kubernetes manifest (one YAML stream), every Helm release (name, chart,
values) with its rendered manifests, the DNS records, and for ENTERPRISE the
Terraform files and variables. The drivers build these with the same code
their ensure_* methods apply.
"""
from __future__ import annotations

import json
import sys

import yaml
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from deploy.interfaces import ClusterRef
from deploy.real import real_backend
from provisioning.engine import plans as P
from provisioning.engine import steps_catalog as C
from provisioning.engine.spec import tenant_spec
from provisioning.engine.steps import RELEASES, StepContext, _terraform_variables, _values
from tenants.models import Tenant
from tenants.serializers import RESERVED_SLUGS, SLUG_PATTERN

PLAN_INGRESS_IP = "203.0.113.10"


class Command(BaseCommand):
    help = "Print every manifest, Helm release, DNS record and Terraform file for a tenant (touches nothing)."

    def add_arguments(self, parser):
        parser.add_argument("--tier", required=True, choices=[plan.tier for plan in P.PLANS.values()
                                                              if plan.kind == P.Kind.PROVISION])
        parser.add_argument("--slug", required=True)
        parser.add_argument("--region", default=None)
        parser.add_argument("--admin-email", default=None)

    def handle(self, *args, tier: str, slug: str, region: str | None, admin_email: str | None, **options):
        if not SLUG_PATTERN.match(slug) or not 3 <= len(slug) <= 63 or slug in RESERVED_SLUGS:
            raise CommandError(f"'{slug}' is not a usable tenant slug (a DNS label of 3-63 characters, not reserved).")
        region = region or settings.MATIH_REGIONS[0]
        if region not in settings.MATIH_REGIONS:
            raise CommandError(f"Unknown region '{region}'; use one of {', '.join(settings.MATIH_REGIONS)}.")
        backend = real_backend(settings)
        dedicated = tier == "ENTERPRISE"
        cluster = ClusterRef(name=f"aks-{slug}" if dedicated else f"shared-{region}-1", dedicated=dedicated)
        spec = tenant_spec(tenant_id="00000000-0000-0000-0000-000000000000", slug=slug, tier=tier, region=region,
                           admin_email=admin_email or f"admin@{slug}.example.com", cluster=cluster)
        tenant = Tenant(id=spec.tenant_id, slug=slug, tier=tier, region=region, admin_email=spec.admin_email)
        ctx = StepContext(job_id="plan", tenant=tenant, tenant_settings={}, job_context={}, backend=backend)
        plan = P.plan_for(tier)
        out = sys.stdout

        def section(title: str) -> None:
            out.write(f"# ==== {title}\n")

        section(f"tenant {slug}: tier {tier}, region {region}, namespace {spec.namespace}, "
                f"phases {' -> '.join(plan.phases)}")
        section("Kubernetes manifests")
        out.write(yaml.safe_dump_all(backend.kubernetes.manifests(spec), sort_keys=False))
        for step_name in (s.name for s in plan.steps if s.name in RELEASES):
            release, chart = RELEASES[step_name]
            name = f"{slug}-{release}"
            values = _values(ctx, chart)
            section(f"Helm release {name}: chart {chart} ({step_name})")
            out.write("# values:\n" + "".join(f"#   {line}\n" for line in
                                              yaml.safe_dump(values, sort_keys=False).splitlines()))
            out.write("---\n" + yaml.safe_dump_all(backend.helm.render(spec, name, chart, values), sort_keys=False))
        if C.CREATE_DNS_ZONE in plan.step_names:
            section(f"Azure DNS: child zone {spec.dns_zone}, delegation in {spec.parent_zone}")
            for record in backend.dns.records(spec, PLAN_INGRESS_IP):
                out.write(f"# {json.dumps(record)}\n")
        if C.TERRAFORM_APPLY in plan.step_names:
            variables = _terraform_variables(ctx)
            section(f"Terraform workspace tenant-{slug}: variables {json.dumps(variables)}")
            for path, content in backend.terraform.files(spec, variables).items():
                section(f"file {path}")
                out.write("".join(f"# {line}\n" for line in content.splitlines()))
