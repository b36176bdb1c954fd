"""Print what the real backend would do to a tenant for an operation, touching nothing.

    provision_plan --tier PROFESSIONAL --slug acme                    # provisioning (the default)
    provision_plan --operation CHANGE_TIER --from FREE --to PROFESSIONAL --slug acme
    provision_plan --operation SUSPEND|ACTIVATE|DEPROVISION --tier PROFESSIONAL --slug acme

First the operation's plan: its phases, each step with what it waits for and what undoes it.
Then what the plan applies at the tier it ends at: every Kubernetes manifest (one YAML stream),
every Helm release it installs or upgrades (name, chart, values) with its rendered manifests,
the DNS records, and where Terraform runs its files and variables. The drivers build these
with the same code their ensure_* methods apply.
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
from tenants.rules import RESERVED_SLUGS, is_valid_slug

PLAN_INGRESS_IP = "203.0.113.10"


class Command(BaseCommand):
    help = "Print every manifest, Helm release, DNS record and Terraform file for a tenant (touches nothing)."

    def add_arguments(self, parser):
        tiers = sorted({plan.tier for plan in P.PLANS.values()})
        parser.add_argument("--operation", default=P.Kind.PROVISION, choices=list(P.Kind.ALL),
                            help="The job's kind (default PROVISION).")
        parser.add_argument("--tier", choices=tiers, help="The tenant's tier (every operation but CHANGE_TIER).")
        parser.add_argument("--from", dest="from_tier", choices=tiers, help="CHANGE_TIER: the tier it has.")
        parser.add_argument("--to", dest="to_tier", choices=tiers, help="CHANGE_TIER: the tier it moves to.")
        parser.add_argument("--slug", required=True)
        parser.add_argument("--region", default=None)
        parser.add_argument("--admin-email", default=None)

    def handle(self, *args, operation: str, tier: str | None, from_tier: str | None, to_tier: str | None,
               slug: str, region: str | None, admin_email: str | None, **options):
        if operation == P.Kind.CHANGE_TIER:
            if not from_tier or not to_tier or tier:
                raise CommandError("CHANGE_TIER takes --from and --to (not --tier).")
            if not P.has_plan(operation, to_tier, from_tier):
                raise CommandError(f"No plan moves {from_tier} to {to_tier}"
                                   + (" (an ENTERPRISE tenant cannot move to a shared tier)."
                                      if from_tier == "ENTERPRISE" else "."))
            tier = to_tier
        elif not tier or from_tier or to_tier:
            raise CommandError(f"{operation} takes --tier (not --from or --to).")
        if not is_valid_slug(slug) or slug in RESERVED_SLUGS:
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
        plan = P.plan_of(operation, tier, from_tier if operation == P.Kind.CHANGE_TIER else None)
        ctx = StepContext(job_id="plan", tenant=tenant, tenant_settings={}, job_context={}, backend=backend, plan=plan)
        out = sys.stdout

        def section(title: str) -> None:
            out.write(f"# ==== {title}\n")

        change = f"from {from_tier} to {tier}" if operation == P.Kind.CHANGE_TIER else f"tier {tier}"
        section(f"tenant {slug}: {operation} ({plan.key}), {change}, region {region}, namespace {spec.namespace}, "
                f"phases {' -> '.join(plan.phases)}")
        for phase in plan.phases:
            out.write(f"# {phase}" + (" (forward only: retried, never undone)" if plan.is_forward_only(phase) else "")
                      + "\n")
            for step in plan.steps_of(phase):
                waits = f" after {', '.join(step.after)}" if step.after else ""
                undo = f"; undone by: {step.compensation}" if step.compensation and not plan.is_forward_only(phase) \
                    else ""
                out.write(f"#   {step.name}{waits}{undo}\n")
        if operation not in (P.Kind.PROVISION, P.Kind.CHANGE_TIER):
            return  # suspension, activation and deprovisioning apply no new manifests
        section(f"Kubernetes manifests at {tier}")
        out.write(yaml.safe_dump_all(backend.kubernetes.manifests(spec), sort_keys=False))
        installs = {C.UPGRADE_CORE_SERVICES: C.DEPLOY_CORE_SERVICES}
        for step_name in (installs.get(s.name, s.name) for s in plan.steps if installs.get(s.name, s.name) in RELEASES):
            release, chart = RELEASES[step_name]
            name = f"{slug}-{release}"
            values = _values(ctx, chart)
            section(f"Helm release {name}: chart {chart} ({step_name})")
            out.write("# values:\n" + "".join(f"#   {line}\n" for line in
                                              yaml.safe_dump(values, sort_keys=False).splitlines()))
            out.write("---\n" + yaml.safe_dump_all(backend.helm.render(spec, name, chart, values), sort_keys=False))
        if C.CREATE_DNS_ZONE in plan.step_names or C.CUT_OVER_DNS in plan.step_names:
            section(f"Azure DNS: child zone {spec.dns_zone}, delegation in {spec.parent_zone}")
            for record in backend.dns.records(spec, PLAN_INGRESS_IP):
                out.write(f"# {json.dumps(record)}\n")
        if C.TERRAFORM_APPLY in plan.step_names:
            variables = _terraform_variables(ctx)
            section(f"Terraform workspace tenant-{slug}: variables {json.dumps(variables)}")
            for path, content in backend.terraform.files(spec, variables).items():
                section(f"file {path}")
                out.write("".join(f"# {line}\n" for line in content.splitlines()))
