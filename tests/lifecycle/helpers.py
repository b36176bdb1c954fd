"""The tenant's life through the API, and what it has in the simulated cloud (for exact comparisons)."""
from __future__ import annotations

import json

from django.db import transaction

from deploy.models import Cluster, ClusterSlot, SimulatedResource
from deploy.simulated import SimulatedCloud
from provisioning import lifecycle
from provisioning.engine.spec import tenant_spec
from provisioning.engine.steps.context import terraform_lock_key
from provisioning.models import ProvisioningJob, TenantResource
from tenants.models import Tenant
from tests.harness import wait_for
from tests.dataplane.helpers import job_of, register

SERVICE_PRINCIPAL = {"clientId": "11111111-2222-3333-4444-555555555555", "clientSecret": "s3cr3t-value",
                     "azureTenantId": "tenant-guid", "subscriptionId": "sub-guid"}
# The workloads a Helm release runs: in the cloud, not in the inventory (their release is).
WORKLOAD_KINDS = ("Deployment", "StatefulSet")
# Bookkeeping that legitimately changes when a step is undone: a Helm release installed again at
# the former tier's values is a new revision (its values' fingerprint is compared).
BOOKKEEPING = {"HelmRelease": ("revision",)}
# Between two tenants that did the same: the revision counts (a release installed twice with other
# values is one more), its fingerprint cannot (the values hold the tenant's names).
TWIN_BOOKKEEPING = {"HelmRelease": ("values",)}
# What each provisioned tenant's services have written to its schema (migrated, exported, dropped).
ROWS = {"reports": [{"id": i, "title": f"report {i}"} for i in range(5)], "users": [{"id": 1, "name": "ada"}]}

Key = tuple[str, str, str]  # (kind, location, name)


# --- what the tenant has ---------------------------------------------------------------------------


def world(slug: str, *, ignore: dict[str, tuple[str, ...]] = BOOKKEEPING) -> dict[Key, dict]:
    """Everything of the tenant in the simulated cloud, with its state: each SimulatedResource it owns,
    its cluster slot, its dedicated cluster's record and its Terraform state lock, keyed by
    (kind, location, name). `ignore` drops bookkeeping fields from a kind's data."""
    found: dict[Key, dict] = {}
    for row in SimulatedResource.objects.filter(owner=slug):
        dropped = ignore.get(row.kind, ())
        found[(row.kind, row.location, row.name)] = {k: v for k, v in row.data.items() if k not in dropped}
    lock = SimulatedResource.objects.filter(kind="StateLock", name=terraform_lock_key(slug)).first()
    if lock is not None:
        found[("StateLock", lock.location, lock.name)] = {"owner": lock.owner}
    for slot in ClusterSlot.objects.filter(tenant_key=slug).select_related("cluster"):
        found[("ClusterSlot", slot.cluster.name, slot.tenant_key)] = {}
    for cluster in Cluster.objects.filter(name=f"aks-{slug}"):
        found[("Cluster", cluster.region, cluster.name)] = {"kind": cluster.kind}
    return found


def inventoried(world_: dict[Key, dict]) -> set[Key]:
    """What GET /resources must list of a world: all but the releases' workloads and the state lock."""
    return {key for key in world_ if key[0] not in (*WORKLOAD_KINDS, "StateLock")}


def inventory(client, tenant_id) -> set[Key]:
    """GET /tenants/{id}/resources, as (kind, location, name); a resource listed twice is an error."""
    response = client.get(f"/api/v1/tenants/{tenant_id}/resources")
    assert response.status_code == 200, response.content
    listed = [(r["kind"], r["location"], r["name"]) for r in response.json()["results"]]
    assert len(listed) == len(set(listed)), f"listed twice: {sorted(k for k in listed if listed.count(k) > 1)}"
    return set(listed)


def assert_inventory_is_what_exists(client, tenant: dict, world_: dict[Key, dict] | None = None) -> None:
    """GET /resources lists exactly what the tenant has in the cloud (`world_`, or now)."""
    exists = inventoried(world(tenant["slug"]) if world_ is None else world_)
    listed = inventory(client, tenant["id"])
    wrong = differences(dict.fromkeys(exists), dict.fromkeys(listed))
    assert not wrong, "GET /resources is not what exists ('extra': listed, not there):\n" + wrong


def generic(world_: dict[Key, dict], tenant: dict) -> dict[Key, dict]:
    """A world with the tenant's id, slug and SQL identifier replaced, so that two tenants' worlds
    compare (give world() `ignore=TWIN_BOOKKEEPING`: a release's values fingerprint hashes the slug)."""
    items = _anonymous(sorted(([*key], data) for key, data in world_.items()), tenant)
    return {tuple(key): data for key, data in items}


def made_by_each_step(job: ProvisioningJob, tenant: dict) -> dict[str, list[Key]]:
    """What each step of the job recorded in the inventory (removed since or not), made generic."""
    made: dict[str, list] = {}
    for row in TenantResource.objects.filter(job=job).order_by("step", "kind", "location", "name"):
        made.setdefault(row.step, []).append([row.kind, row.location, row.name])
    return {step: [tuple(key) for key in keys] for step, keys in _anonymous(made, tenant).items()}


def _anonymous(value, tenant: dict):
    slug = tenant["slug"]
    text = json.dumps(value)
    text = text.replace(str(tenant["id"]), "{id}").replace(slug.replace("-", "_"), "{sql}").replace(slug, "{slug}")
    return json.loads(text)


def differences(expected: dict[Key, dict | None], actual: dict[Key, dict | None]) -> str:
    """What differs between two worlds, one line a resource ('' when they are equal)."""
    lines = [f"missing {key}: {expected[key]}" for key in sorted(set(expected) - set(actual))]
    lines += [f"extra {key}: {actual[key]}" for key in sorted(set(actual) - set(expected))]
    lines += [f"changed {key}: {expected[key]} -> {actual[key]}" for key in sorted(set(expected) & set(actual))
              if expected[key] != actual[key]]
    return "\n".join(lines)


# --- operations, through the API -------------------------------------------------------------------


def provisioned(client, tier: str, count: int = 1, *, time_scale: float = 0.0) -> list[dict]:
    """`count` tenants registered at `tier` and ACTIVE (provisioned side by side)."""
    tenants = [register(client, tier=tier, simulate={"timeScale": time_scale}) for _ in range(count)]
    wait_for(lambda: all(_ended(t["id"]) for t in tenants), timeout=90, interval=0.1,
             message=f"{count} {tier} tenants to provision")
    for tenant in tenants:
        assert job_of(tenant["id"]).status == "COMPLETED", job_of(tenant["id"]).error_message
        write_rows(tenant)
    return tenants


def write_rows(tenant: dict, tables: dict[str, list] = ROWS) -> None:
    """The tenant's services writing to its schema in the simulated cloud."""
    record = Tenant.objects.get(id=tenant["id"])
    spec = tenant_spec(tenant_id=record.id, slug=record.slug, tier=record.tier, region=record.region,
                       admin_email=record.admin_email)
    database = SimulatedCloud(time_scale=0).database
    for table, rows in tables.items():
        database.put_rows(spec, table, rows)


def simulate(faults: dict | None = None, time_scale: float = 0.0) -> dict:
    return {"faults": faults or {}, "timeScale": time_scale}


def upgrade(client, tenant: dict, new_tier: str, *, faults: dict | None = None, time_scale: float = 0.0) -> dict:
    body = {"newTier": new_tier, "simulate": simulate(faults, time_scale)}
    if new_tier == "ENTERPRISE":
        body["servicePrincipal"] = SERVICE_PRINCIPAL
    return _accepted(client.post(f"/api/v1/tenants/{tenant['id']}/upgrade", body, format="json"))


def suspend(client, tenant: dict, *, faults: dict | None = None, time_scale: float = 0.0) -> dict:
    return _accepted(client.post(f"/api/v1/tenants/{tenant['id']}/suspend",
                                 {"reason": "tests", "simulate": simulate(faults, time_scale)}, format="json"))


def activate(client, tenant: dict, *, faults: dict | None = None, time_scale: float = 0.0) -> dict:
    return _accepted(client.post(f"/api/v1/tenants/{tenant['id']}/activate",
                                 {"simulate": simulate(faults, time_scale)}, format="json"))


def delete(client, tenant: dict, *, grace_seconds: int = 0) -> dict:
    return _accepted(client.delete(f"/api/v1/tenants/{tenant['id']}", {"graceSeconds": grace_seconds}, format="json"))


def retry(client, tenant: dict, *, faults: dict | None = None, time_scale: float = 0.0) -> dict:
    """POST .../provisioning/retry with a simulate block that replaces the job's faults."""
    return _accepted(client.post(f"/api/v1/tenants/{tenant['id']}/provisioning/retry",
                                 {"simulate": simulate(faults, time_scale)}, format="json"))


def start_deprovision(tenant: dict, *, faults: dict, time_scale: float = 0.0) -> ProvisioningJob:
    """What the sweeper does once a tenant's grace period has passed (lifecycle.start_deprovision), with
    faults in the job's simulate block: DELETE takes none (the DEPROVISION job starts later, from the
    sweeper), so the test writes them into the job before the commit that sends its canvas."""
    with transaction.atomic():
        job = lifecycle.start_deprovision(tenant=Tenant.objects.get(id=tenant["id"]))
        assert job is not None, f"tenant {tenant['slug']} is not due for deprovisioning"
        job.context = {**job.context, "simulate": simulate(faults, time_scale)}
        job.save(update_fields=["context"])
    return job


def _accepted(response) -> dict:
    assert response.status_code == 202, response.content
    return response.json()


# --- waiting ---------------------------------------------------------------------------------------


def _ended(tenant_id) -> bool:
    job = job_of(tenant_id)
    return job is not None and job.is_terminal


def wait_for_jobs(tenants: list[dict], kind: str, *, timeout: float = 90.0) -> list[ProvisioningJob]:
    """Until each tenant's latest job is a `kind` job that ended; those jobs."""
    def ended() -> bool:
        return all(_ended(t["id"]) and job_of(t["id"]).kind == kind for t in tenants)

    try:
        wait_for(ended, timeout=timeout, interval=0.1, message=f"{len(tenants)} {kind} job(s) to end")
    except AssertionError as timed_out:
        raise AssertionError(f"{timed_out}; the jobs that did not end:\n{describe_stuck(tenants)}") from None
    return [job_of(t["id"]) for t in tenants]


def describe_stuck(tenants: list[dict]) -> str:
    """Each open job: its status and lease, its steps that are not done, its last events."""
    from provisioning.models import ProvisioningEvent, StepRun

    lines = []
    for tenant in tenants:
        job = job_of(tenant["id"])
        if job is None or job.is_terminal:
            continue
        lines.append(f"- {tenant['slug']}: {job.kind} {job.status} lease {job.lease_expires_at} "
                     f"version {job.version} succeeded {len(job.succeeded_steps)}")
        for step in StepRun.objects.filter(job=job).exclude(status="SUCCEEDED").order_by("position"):
            lines.append(f"    {step.name} {step.status} attempts {step.attempts} lease {step.lease_expires_at} "
                         f"by {step.claimed_by}")
        for event in ProvisioningEvent.objects.filter(job=job).order_by("-seq")[:6]:
            lines.append(f"    #{event.seq} {event.kind} {event.step} {event.message[:120]}")
    return "\n".join(lines) or "(none)"


def tenant_status(tenant: dict) -> str:
    return Tenant.objects.filter(id=tenant["id"]).values_list("status", flat=True).get()
