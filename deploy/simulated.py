"""The simulated cloud: every driver interface, in-process, with real state.

Each resource it "creates" is a SimulatedResource row, unique per (kind,
location, name) like the systems it plays, and its state lives in the row's
`data`: a workload's replicas, a quota's values, whether an ingress is blocked
and its class, a DNS record's IPs, a schema's tables. Operations are
create-or-get by the same deterministic names as the real drivers (deploy.inventory
holds them), "already gone" is success, and every ensure_* and leftovers(spec)
returns resources in the same shape as the real drivers, so the engine's
inventory and its leftover scan work on the embedded default. Exports are real
files with their sha256.

Each step's work takes the step's nominal duration times the time scale, and
fails on request:

- `faults` (from the registration's or the retry's `simulate`):
  {"STEP": {"mode": "transient"|"permanent", "times": N}}; a transient fault
  fails the step's first N attempts, a permanent one every attempt.
- `fault_rate` (MATIH_SIM_FAULT_RATE): a random transient failure of any step.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import secrets
import time
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

import yaml
from django.db import connection, transaction
from django.db.models import Q
from psycopg.types.json import Jsonb

from deploy import inventory
from deploy import settings as defaults
from deploy.errors import PermanentInfraError, TransientInfraError
from deploy.interfaces import TenantSpec
from deploy.inventory import (
    ADMIN,
    INGRESS,
    LIMITS,
    LOG_PIPELINE,
    QUOTA,
    SUSPENDED_SERVICE,
    TENANT_LABEL,
    TRACE_PIPELINE,
    namespaced,
    resource,
)
from deploy.models import SimulatedResource

SIMULATED_INGRESS_IP = "203.0.113.10"  # TEST-NET-3: never routable
SIMULATED_SERVER = "simulated-postgres:5432"
SIMULATED_DATABASE = "matih_data"
CHARTS_DIR = Path(__file__).resolve().parent / "charts"
# The workloads each tenant chart runs, and the key of its tier profile that sets their replicas.
CHART_WORKLOADS: dict[str, tuple[tuple[str, str, str | None], ...]] = {
    "core-services": (("Deployment", "core-api", "replicas"), ("Deployment", "core-bi", "replicas"),
                      ("Deployment", "core-web", "replicas")),
    "data-services": (("Deployment", "data-query", "queryReplicas"), ("StatefulSet", "data-cache", None)),
    "ingress-controller": (("Deployment", "ingress-controller", "replicas"),),
    "monitoring": (),
}
WORKLOAD_KINDS = ("Deployment", "StatefulSet")


# --- rows -------------------------------------------------------------------------------------------
# The writes a provisioning makes are single statements of their own (one round trip, atomic by
# themselves): at time scale 0 the simulated cloud's cost is what a benchmark of the engine sees.

TABLE = SimulatedResource._meta.db_table

_UPSERT = f"""
INSERT INTO {TABLE} (kind, name, location, owner, data, created_at)
SELECT r.kind, r.name, r.location, %(owner)s, coalesce(r.data, '{{}}'::jsonb), now()
FROM jsonb_to_recordset(%(rows)s) AS r(kind text, name text, location text, data jsonb)
ON CONFLICT (kind, location, name) DO """
UPSERT_SQL = _UPSERT + "UPDATE SET data = EXCLUDED.data"
CREATE_OR_GET_SQL = _UPSERT + "NOTHING"


def _row_params(owner: str, rows: list[tuple[str, str, str, dict | None]]) -> dict:
    return {"owner": owner, "rows": Jsonb([{"kind": kind, "name": name, "location": location, "data": data or {}}
                                           for kind, name, location, data in rows])}


def _resources_of(rows: list[tuple[str, str, str, dict | None]]) -> list[dict]:
    return [resource(kind, name, location) for kind, name, location, _ in rows]


def _put_rows(owner: str, rows: list[tuple[str, str, str, dict | None]], *, replace: bool = True) -> list[dict]:
    """Create-or-update (or, with replace=False, create-or-get) rows (kind, name, location, data) in one
    statement; their resources."""
    if rows:
        with connection.cursor() as cursor:
            cursor.execute(UPSERT_SQL if replace else CREATE_OR_GET_SQL, _row_params(owner, rows))
    return _resources_of(rows)


def _put(owner: str, location: str, items: list[tuple[str, str, dict | None]], *, replace: bool = True) -> list[dict]:
    """_put_rows, all in one location."""
    return _put_rows(owner, [(kind, name, location, data) for kind, name, data in items], replace=replace)


# Names that start with a prefix, as a range of the name's byte order (its collation is "C"), which the
# unique index serves: a LIKE pattern given as a parameter cannot use it in a prepared statement's plan.
NAME_IN_RANGE = "name >= %(name_from)s AND name < %(name_to)s"


def name_range(prefix: str) -> dict:
    """NAME_IN_RANGE's parameters for the names that start with `prefix`."""
    return {"name_from": prefix, "name_to": prefix[:-1] + chr(ord(prefix[-1]) + 1)}


def _under(prefix: str) -> Q:
    """The same range, for the ORM's queries."""
    bounds = name_range(prefix)
    return Q(name__gte=bounds["name_from"], name__lt=bounds["name_to"])


# ensure_network_policies: the wanted policies made, the namespace's others deleted (their names).
ENSURE_POLICIES_SQL = f"""
WITH made AS ({UPSERT_SQL.strip()}
), pruned AS (
    DELETE FROM {TABLE} WHERE kind = 'NetworkPolicy' AND location = %(location)s AND {NAME_IN_RANGE}
      AND NOT name = ANY(%(wanted)s::varchar[])
    RETURNING name
)
SELECT name FROM pruned"""

# SimulatedHelm.install: the release (its revision goes up when its values' fingerprint changed,
# as `helm upgrade` makes a new revision) and its workloads set back to what the chart says.
HELM_INSTALL_SQL = f"""
WITH release AS (
    INSERT INTO {TABLE} AS live (kind, name, location, owner, data, created_at)
    VALUES ('HelmRelease', %(name)s, %(location)s, %(owner)s, %(release)s, now())
    ON CONFLICT (kind, location, name) DO UPDATE SET data = EXCLUDED.data || jsonb_build_object('revision',
        coalesce((live.data ->> 'revision')::int, 1)
        + CASE WHEN live.data -> 'values' IS DISTINCT FROM EXCLUDED.data -> 'values' THEN 1 ELSE 0 END)
    RETURNING (data ->> 'revision')::int AS revision
), workloads AS ({UPSERT_SQL.strip()}
)
SELECT revision FROM release"""

# SimulatedVerify.check: does the namespace exist, which workloads are scaled to zero, is the
# ingress blocked (SimulatedKubernetes.workloads and ingress_state, in one statement).
CHECK_SQL = f"""
SELECT EXISTS (SELECT 1 FROM {TABLE} WHERE kind = 'Namespace' AND location = %(location)s AND name = %(namespace)s),
    coalesce((SELECT array_agg(substr(name, strpos(name, '/') + 1) ORDER BY substr(name, strpos(name, '/') + 1))
              FROM {TABLE} WHERE kind = ANY(%(kinds)s::varchar[]) AND location = %(location)s
                AND {NAME_IN_RANGE} AND coalesce(data -> 'replicas', '1'::jsonb) = '0'::jsonb), '{{}}'),
    coalesce((SELECT data -> 'blocked' = 'true'::jsonb FROM {TABLE}
              WHERE kind = 'Ingress' AND location = %(location)s AND name = %(ingress)s), false)"""


def _rows(kind: str | tuple[str, ...], location: str, **filters):
    kinds = (kind,) if isinstance(kind, str) else kind
    return SimulatedResource.objects.filter(kind__in=kinds, location=location, **filters)


def _one(kind: str, location: str, name: str) -> SimulatedResource | None:
    return _rows(kind, location, name=name).first()


def _exists(kind: str, location: str, name: str) -> bool:
    return _rows(kind, location, name=name).exists()


def _delete(kind: str, location: str, name: str) -> None:
    _rows(kind, location, name=name).delete()


def _as_resources(rows) -> list[dict]:
    return [resource(row.kind, row.name, row.location) for row in rows]


@lru_cache(maxsize=None)
def _chart_values(chart: str) -> dict:
    with open(CHARTS_DIR / chart / "values.yaml") as handle:
        return yaml.safe_load(handle) or {}


def _checksum(rows: list) -> str:
    """Like the real driver's: an md5 over the rows' md5s in sorted order."""
    digests = sorted(hashlib.md5(json.dumps(row, sort_keys=True).encode()).hexdigest() for row in rows)
    return hashlib.md5("".join(digests).encode()).hexdigest()


class _Part:
    """One driver of the simulated cloud; they share the cloud's settings."""

    def __init__(self, cloud: "SimulatedCloud"):
        self.cloud = cloud


# --- kubernetes ----------------------------------------------------------------------------------------

class SimulatedKubernetes(_Part):
    def location(self, spec: TenantSpec) -> str:
        return spec.cluster.name if spec.cluster is not None and spec.cluster.name else self.cloud.shared_cluster

    def ensure_namespace(self, spec: TenantSpec) -> dict:
        where = self.location(spec)
        resources = _put(spec.slug, where, [
            ("Namespace", spec.namespace, {"labels": spec.labels}),
            ("ServiceAccount", namespaced(spec, ADMIN), None),
            ("Role", namespaced(spec, ADMIN), None),
            ("RoleBinding", namespaced(spec, ADMIN), None),
        ])
        return {"namespace": spec.namespace, "resources": resources}

    def delete_namespace(self, spec: TenantSpec) -> None:
        # Deleting a namespace deletes everything in it, as in Kubernetes.
        where = self.location(spec)
        SimulatedResource.objects.filter(_under(f"{spec.namespace}/"), location=where).delete()
        _delete("Namespace", where, spec.namespace)

    def ensure_quotas(self, spec: TenantSpec) -> dict:
        resources = _put(spec.slug, self.location(spec), [
            ("ResourceQuota", namespaced(spec, QUOTA), {"hard": dict(spec.quota)}),
            ("LimitRange", namespaced(spec, LIMITS), {"limits": spec.limit_range}),
        ])
        return {"quota": dict(spec.quota), "resources": resources}

    def delete_quotas(self, spec: TenantSpec) -> None:
        _delete("ResourceQuota", self.location(spec), namespaced(spec, QUOTA))
        _delete("LimitRange", self.location(spec), namespaced(spec, LIMITS))

    def ensure_network_policies(self, spec: TenantSpec) -> dict:
        where = self.location(spec)
        wanted = [namespaced(spec, name) for name in inventory.network_policy_names(spec)]
        rows = [("NetworkPolicy", name, where, None) for name in wanted]
        # A tier change is a delta: what the new tier does not have goes (in the same statement).
        with connection.cursor() as cursor:
            cursor.execute(ENSURE_POLICIES_SQL, {**_row_params(spec.slug, rows), "location": where,
                                                 **name_range(f"{spec.namespace}/"), "wanted": wanted})
            pruned = sorted(f"NetworkPolicy/{name}" for (name,) in cursor.fetchall())
        return {"networkPolicies": inventory.network_policy_names(spec), "pruned": pruned,
                "resources": _resources_of(rows)}

    def delete_network_policies(self, spec: TenantSpec) -> None:
        _rows("NetworkPolicy", self.location(spec)).filter(_under(f"{spec.namespace}/")).delete()

    def ensure_ingress(self, spec: TenantSpec) -> dict:
        ingress_class = inventory.ingress_class(spec, defaults.MATIH_SHARED_INGRESS_CLASS)
        # Desired state, like the real driver's drift patch: this also undoes a block.
        resources = _put(spec.slug, self.location(spec), [("Ingress", namespaced(spec, INGRESS), {
            "hosts": list(spec.hosts), "ingressClass": ingress_class, "blocked": False})])
        return {"hosts": list(spec.hosts), "tlsSecret": f"{spec.slug}-tls", "resources": resources}

    def delete_ingress(self, spec: TenantSpec) -> None:
        _delete("Ingress", self.location(spec), namespaced(spec, INGRESS))

    def ensure_secret(self, spec: TenantSpec, name: str, data: dict[str, str]) -> dict:
        # The value is not recorded: the simulated cloud keeps no secrets either.
        return {"resources": _put(spec.slug, self.location(spec),
                                  [("Secret", namespaced(spec, name), {"keys": sorted(data)})])}

    def delete_secret(self, spec: TenantSpec, name: str) -> None:
        _delete("Secret", self.location(spec), namespaced(spec, name))

    def rollout_status(self, spec: TenantSpec) -> dict[str, bool]:
        return {name: True for name in self.workloads(spec)}  # nothing here is ever slow to start

    def manifests(self, spec: TenantSpec) -> list[dict]:
        return []

    # --- after provisioning -------------------------------------------------------------------------

    def _workload_rows(self, spec: TenantSpec):
        return _rows(WORKLOAD_KINDS, self.location(spec)).filter(_under(f"{spec.namespace}/"))

    def workloads(self, spec: TenantSpec) -> dict[str, int]:
        return {row.name.split("/", 1)[1]: row.data.get("replicas", 1) for row in self._workload_rows(spec)}

    def scale_workloads(self, spec: TenantSpec, replicas: int) -> dict:
        before = {}
        with transaction.atomic():
            for row in self._workload_rows(spec).select_for_update():
                name = row.name.split("/", 1)[1]
                current = row.data.get("replicas", 1)
                if replicas == 0:
                    before[name] = row.data.setdefault("replicasBeforeSuspend", current)  # kept if already there
                else:
                    before[name] = current
                row.data["replicas"] = replicas
                row.save(update_fields=["data"])
        return {"workloads": before}

    def restore_workloads(self, spec: TenantSpec) -> dict:
        restored = {}
        with transaction.atomic():
            for row in self._workload_rows(spec).select_for_update():
                if "replicasBeforeSuspend" not in row.data:
                    continue
                row.data["replicas"] = row.data.pop("replicasBeforeSuspend")
                restored[row.name.split("/", 1)[1]] = row.data["replicas"]
                row.save(update_fields=["data"])
        return {"workloads": restored}

    def patch_quota(self, spec: TenantSpec, hard: dict[str, str]) -> dict:
        with transaction.atomic():
            row = _rows("ResourceQuota", self.location(spec), name=namespaced(spec, QUOTA)).select_for_update().first()
            if row is None:
                raise PermanentInfraError(f"no ResourceQuota {namespaced(spec, QUOTA)} to patch",
                                          hint="the tenant's quotas were never configured (CONFIGURE_QUOTAS)")
            current = row.data.setdefault("hard", {})
            previous = {key: current.get(key) for key, value in hard.items() if current.get(key) != value}
            current.update(hard)
            row.save(update_fields=["data"])
        return {"previous": previous, "hard": dict(current)}

    def block_ingress(self, spec: TenantSpec) -> dict:
        where = self.location(spec)
        with transaction.atomic():
            row = _rows("Ingress", where, name=namespaced(spec, INGRESS)).select_for_update().first()
            if row is None:
                return {"exists": False, "blocked": False, "resources": []}
            resources = _put(spec.slug, where, [("Service", namespaced(spec, SUSPENDED_SERVICE), {"endpoints": []})])
            row.data["blocked"] = True
            row.save(update_fields=["data"])
        return {"exists": True, "blocked": True, "service": SUSPENDED_SERVICE, "resources": resources}

    def unblock_ingress(self, spec: TenantSpec) -> dict:
        where = self.location(spec)
        with transaction.atomic():
            row = _rows("Ingress", where, name=namespaced(spec, INGRESS)).select_for_update().first()
            if row is not None:
                row.data["blocked"] = False
                row.save(update_fields=["data"])
            _delete("Service", where, namespaced(spec, SUSPENDED_SERVICE))
        return {"exists": row is not None, "blocked": False}

    def ingress_state(self, spec: TenantSpec) -> dict:
        row = _one("Ingress", self.location(spec), namespaced(spec, INGRESS))
        if row is None:
            return {"exists": False, "blocked": False, "ingressClass": None, "hosts": [], "backends": []}
        blocked = bool(row.data.get("blocked"))
        backends = [SUSPENDED_SERVICE] if blocked else ["core-api", "core-bi", "core-web"]
        return {"exists": True, "blocked": blocked, "ingressClass": row.data.get("ingressClass"),
                "hosts": row.data.get("hosts", []), "backends": backends}

    def leftovers(self, spec: TenantSpec) -> list[dict]:
        named = Q(name=spec.namespace) | Q(data__contains={"labels": {TENANT_LABEL: spec.slug}})
        return _as_resources(_rows("Namespace", self.location(spec)).filter(named).order_by("name"))


# --- helm ----------------------------------------------------------------------------------------------

class SimulatedHelm(_Part):
    def install(self, spec: TenantSpec, release: str, chart: str, values: dict) -> dict:
        """A release and the workloads its chart runs, with the replicas of the tier's profile.

        Like `helm upgrade`, installing again with other values is a new revision and
        sets the workloads back to what the chart says.
        """
        from deploy.helm import deep_merge

        if chart not in CHART_WORKLOADS:
            raise PermanentInfraError(f"no Helm chart {chart!r}", hint=f"charts live in {CHARTS_DIR}")
        where = self.cloud.kubernetes.location(spec)
        values = dict(values or {})
        custom = values.pop("custom", None) or {}
        merged = deep_merge(deep_merge(_chart_values(chart), values), custom)
        profile = (merged.get("tiers") or {}).get(spec.tier.upper(), {})
        fingerprint = hashlib.sha256(json.dumps(merged, sort_keys=True, default=str).encode()).hexdigest()
        name = namespaced(spec, release)
        workloads = [(kind, namespaced(spec, workload), where, {
            "release": release, "replicas": int(profile.get(key, 1)) if key else 1})
            for kind, workload, key in CHART_WORKLOADS[chart]]
        # One statement: the release (a new revision when its values changed) and its workloads.
        with connection.cursor() as cursor:
            cursor.execute(HELM_INSTALL_SQL, {
                **_row_params(spec.slug, workloads), "name": name, "location": where,
                "release": Jsonb({"chart": chart, "revision": 1, "status": "deployed", "values": fingerprint})})
            (revision,) = cursor.fetchone()
        return {"release": release, "namespace": spec.namespace, "chart": chart, "revision": revision,
                "status": "deployed", "resources": [resource("HelmRelease", name, where)]}

    def uninstall(self, spec: TenantSpec, release: str) -> None:
        where = self.cloud.kubernetes.location(spec)
        with transaction.atomic():
            _rows(WORKLOAD_KINDS, where, data__release=release).filter(_under(f"{spec.namespace}/")).delete()
            _delete("HelmRelease", where, namespaced(spec, release))

    def render(self, spec: TenantSpec, release: str, chart: str, values: dict) -> list[dict]:
        return []

    def releases(self, spec: TenantSpec) -> list[str]:
        rows = _rows("HelmRelease", self.cloud.kubernetes.location(spec)).filter(_under(f"{spec.namespace}/"))
        return sorted(name.split("/", 1)[1] for name in rows.values_list("name", flat=True))

    def leftovers(self, spec: TenantSpec) -> list[dict]:
        where = self.cloud.kubernetes.location(spec)
        return [resource("HelmRelease", namespaced(spec, release), where) for release in self.releases(spec)]


# --- dns -------------------------------------------------------------------------------------------------

class SimulatedDns(_Part):
    NAME_SERVERS = [f"ns{i}-sim.azure-dns.example" for i in (1, 2, 3, 4)]

    def ensure_zone(self, spec: TenantSpec, ingress_ip: str) -> dict:
        label = inventory.delegation_label(spec)
        # One statement; A records are replaced: a new ingress IP repoints them (the ENTERPRISE cut-over).
        _put_rows(spec.slug, [("DnsZone", spec.dns_zone, spec.parent_zone, {"nameServers": self.NAME_SERVERS}),
                              *[("DnsRecord", f"A/{name}", spec.dns_zone, {"ips": [ingress_ip]})
                                for name in inventory.DNS_A_LABELS],
                              ("DnsDelegation", f"NS/{label}", spec.parent_zone, {"nameServers": self.NAME_SERVERS})])
        return {"zone": spec.dns_zone, "nameServers": self.NAME_SERVERS, "ingressIp": ingress_ip,
                "resources": inventory.dns_resources(spec)}

    def delete_zone(self, spec: TenantSpec) -> None:
        with transaction.atomic():
            _delete("DnsDelegation", spec.parent_zone, f"NS/{inventory.delegation_label(spec)}")
            _rows("DnsRecord", spec.dns_zone).delete()
            _delete("DnsZone", spec.parent_zone, spec.dns_zone)

    def records(self, spec: TenantSpec, ingress_ip: str) -> list[dict]:
        return []

    def zone_state(self, spec: TenantSpec) -> dict:
        zone = _exists("DnsZone", spec.parent_zone, spec.dns_zone)
        records = {row.name.split("/", 1)[1]: list(row.data.get("ips", []))
                   for row in _rows("DnsRecord", spec.dns_zone).filter(_under("A/"))} if zone else {}
        delegation = _exists("DnsDelegation", spec.parent_zone, f"NS/{inventory.delegation_label(spec)}")
        return {"zone": zone, "delegation": delegation, "a": records}

    def leftovers(self, spec: TenantSpec) -> list[dict]:
        found = []
        if _exists("DnsZone", spec.parent_zone, spec.dns_zone):
            found.append(resource("DnsZone", spec.dns_zone, spec.parent_zone))
        label = f"NS/{inventory.delegation_label(spec)}"
        if _exists("DnsDelegation", spec.parent_zone, label):
            found.append(resource("DnsDelegation", label, spec.parent_zone))
        return found


# --- terraform and the state lock ---------------------------------------------------------------------------

class SimulatedTerraform(_Part):
    def workspace_path(self, spec: TenantSpec) -> str:
        return os.path.join(defaults.MATIH_TERRAFORM_WORKDIR, f"tenant-{spec.slug}")

    def apply(self, spec: TenantSpec, variables: dict) -> dict:
        name = f"aks-{spec.slug}"
        workspace = f"tenant-{spec.slug}"
        with transaction.atomic():
            resources = _put(spec.slug, self.workspace_path(spec), [("TerraformWorkspace", workspace, {
                "variables": sorted(variables), "state": ["azurerm_resource_group.tenant", "azurerm_virtual_network.tenant",
                                                          "azurerm_kubernetes_cluster.tenant",
                                                          "azurerm_storage_account.tenant"]})])
            resources += _put(spec.slug, spec.region, [("AksCluster", name, {"workspace": workspace})])
        return {
            "cluster_name": name,
            "api_endpoint": f"https://{name}.hcp.{spec.region}.azmk8s.example:443",
            "resource_group": f"rg-matih-{spec.slug}",
            "ingress_ip": SIMULATED_INGRESS_IP,
            "resources": resources,
        }

    def destroy(self, spec: TenantSpec, variables: dict) -> None:
        with transaction.atomic():
            _delete("AksCluster", spec.region, f"aks-{spec.slug}")
            _delete("TerraformWorkspace", self.workspace_path(spec), f"tenant-{spec.slug}")

    def files(self, spec: TenantSpec, variables: dict) -> dict[str, str]:
        return {}

    def leftovers(self, spec: TenantSpec) -> list[dict]:
        found = []
        workspace = _one("TerraformWorkspace", self.workspace_path(spec), f"tenant-{spec.slug}")
        if workspace is not None:
            found.append(resource("TerraformWorkspace", workspace.name, workspace.location))
            if workspace.data.get("state"):
                found.append(resource("TerraformState", workspace.name, workspace.location))
        found += _as_resources(_rows("AksCluster", spec.region, name=f"aks-{spec.slug}"))
        return found


class SimulatedLock(_Part):
    def acquire(self, key: str, owner: str, ttl_seconds: int) -> bool:
        row, created = SimulatedResource.objects.get_or_create(
            kind="StateLock", location="", name=key, defaults={"owner": owner})
        return created or row.owner == owner

    def renew(self, key: str, owner: str, ttl_seconds: int) -> bool:
        return SimulatedResource.objects.filter(kind="StateLock", location="", name=key, owner=owner).exists()

    def release(self, key: str, owner: str) -> None:
        SimulatedResource.objects.filter(kind="StateLock", location="", name=key, owner=owner).delete()

    def holder(self, key: str) -> str | None:
        return (SimulatedResource.objects.filter(kind="StateLock", location="", name=key)
                .values_list("owner", flat=True).first())


# --- database --------------------------------------------------------------------------------------------

class SimulatedDatabase(_Part):
    """Roles and databases on SIMULATED_SERVER; a schema's rows kept as {"tables": {name: [rows]}}."""

    @staticmethod
    def names(spec: TenantSpec) -> dict[str, str | None]:
        # The one naming rule, the real driver's (importing it costs only psycopg, installed anyway).
        from deploy.database import tenant_identifier

        name = tenant_identifier(spec.slug)
        return {"role": name, "schema": name, "database": name if spec.tier.upper() == "ENTERPRISE" else None}

    def _schema_location(self, spec: TenantSpec) -> str:
        return f"{SIMULATED_SERVER}/{self.names(spec)['database'] or SIMULATED_DATABASE}"

    def _schema(self, spec: TenantSpec) -> SimulatedResource | None:
        return _one("DatabaseSchema", self._schema_location(spec), self.names(spec)["schema"])

    def ensure_tenant_database(self, spec: TenantSpec, password: str | None = None) -> dict:
        names = self.names(spec)
        # One statement, create-or-get: a redelivered setup must not empty the tenant's tables.
        resources = _put_rows(spec.slug, [
            ("DatabaseRole", names["role"], SIMULATED_SERVER, None),
            *([("Database", names["database"], SIMULATED_SERVER, None)] if names["database"] else []),
            ("DatabaseSchema", names["schema"], self._schema_location(spec), {"tables": {}})], replace=False)
        return {"schema": names["schema"], "role": names["role"], "database": names["database"] or SIMULATED_DATABASE,
                "host": SIMULATED_SERVER.split(":")[0], "port": 5432,
                "password": password or secrets.token_urlsafe(24), "resources": resources}

    def drop_tenant_database(self, spec: TenantSpec) -> None:
        """One half (own database, or shared schema); the role with the last half, as the real driver does."""
        names = self.names(spec)
        with transaction.atomic():
            if names["database"]:
                _rows("DatabaseSchema", f"{SIMULATED_SERVER}/{names['database']}").delete()
                _delete("Database", SIMULATED_SERVER, names["database"])
            else:
                _delete("DatabaseSchema", f"{SIMULATED_SERVER}/{SIMULATED_DATABASE}", names["schema"])
            other_half = (_exists("DatabaseSchema", f"{SIMULATED_SERVER}/{SIMULATED_DATABASE}", names["schema"])
                          or _exists("Database", SIMULATED_SERVER, names["role"]))
            if not other_half:
                _delete("DatabaseRole", SIMULATED_SERVER, names["role"])

    def put_rows(self, spec: TenantSpec, table: str, rows: list) -> None:
        """Simulated only: the tenant's services writing `rows` into `table` of its schema."""
        with transaction.atomic():
            schema = (_rows("DatabaseSchema", self._schema_location(spec), name=self.names(spec)["schema"])
                      .select_for_update().first())
            if schema is None:
                raise PermanentInfraError(f"no schema {self.names(spec)['schema']} for tenant {spec.slug}")
            schema.data.setdefault("tables", {})[table] = list(rows)
            schema.save(update_fields=["data"])

    def table_fingerprints(self, spec: TenantSpec) -> dict:
        schema = self._schema(spec)
        tables = (schema.data.get("tables") or {}) if schema else {}
        return {name: {"rows": len(rows), "checksum": _checksum(rows)} for name, rows in sorted(tables.items())}

    def export_tenant_data(self, spec: TenantSpec, directory: str) -> dict:
        schema = self._schema(spec)
        names = self.names(spec)
        if schema is None:
            return {"path": None, "bytes": 0, "sha256": None,
                    "reason": f"schema {names['schema']} does not exist: nothing to export"}
        lines = [f"-- simulated export of schema {names['schema']} of tenant {spec.slug}"]
        for table, rows in sorted((schema.data.get("tables") or {}).items()):
            lines.append(f"-- table {names['schema']}.{table}: {len(rows)} rows")
            lines += [json.dumps(row, sort_keys=True) for row in rows]
        content = ("\n".join(lines) + "\n").encode()
        target = Path(directory)
        target.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = target / f"{spec.slug}-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%SZ')}.sql"
        partial = path.with_name(f".{path.name}.partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        os.replace(partial, path)
        return {"path": str(path), "bytes": len(content), "sha256": hashlib.sha256(content).hexdigest(),
                "database": names["database"] or SIMULATED_DATABASE, "schema": names["schema"]}

    def copy_to_dedicated(self, source: TenantSpec, target: TenantSpec) -> dict:
        with transaction.atomic():
            origin = self._schema(source)
            copy = (_rows("DatabaseSchema", self._schema_location(target), name=self.names(target)["schema"])
                    .select_for_update().first())
            if origin is None:
                raise PermanentInfraError(f"no schema {self.names(source)['schema']} to copy",
                                          hint="the tenant's shared database was never set up, or is already gone")
            if copy is None or not self.names(target)["database"]:
                raise PermanentInfraError(f"the dedicated database {self.names(target)['database']} does not exist",
                                          hint="set up the dedicated database (ensure_tenant_database) before the copy")
            copy.data["tables"] = json.loads(json.dumps(origin.data.get("tables") or {}))
            copy.save(update_fields=["data"])
        return {"tables": self.verify_copy(source, target), "database": self.names(target)["database"],
                "schema": self.names(target)["schema"]}

    def verify_copy(self, source: TenantSpec, target: TenantSpec) -> dict:
        expected, copied = self.table_fingerprints(source), self.table_fingerprints(target)
        for table in sorted(set(expected) | set(copied)):
            if expected.get(table) != copied.get(table):
                raise PermanentInfraError(f"the copy of table {self.names(source)['schema']}.{table} does not match",
                                          hint="run the migration again (it replaces the copy)")
        return expected

    def drop_dedicated_copy(self, target: TenantSpec) -> None:
        with transaction.atomic():
            copy = (_rows("DatabaseSchema", self._schema_location(target), name=self.names(target)["schema"])
                    .select_for_update().first())
            if copy is not None and self.names(target)["database"]:
                copy.data["tables"] = {}
                copy.save(update_fields=["data"])

    def drop_shared_schema(self, source: TenantSpec) -> None:
        _delete("DatabaseSchema", f"{SIMULATED_SERVER}/{SIMULATED_DATABASE}", self.names(source)["schema"])

    def leftovers(self, spec: TenantSpec) -> list[dict]:
        name = self.names(spec)["role"]
        found = _as_resources(_rows("DatabaseRole", SIMULATED_SERVER, name=name))
        found += _as_resources(_rows("Database", SIMULATED_SERVER, name=name))
        found += _as_resources(_rows("DatabaseSchema", f"{SIMULATED_SERVER}/{SIMULATED_DATABASE}", name=name))
        return found


# --- credentials, observability, verification ------------------------------------------------------------

class SimulatedCredentials(_Part):
    def validate_service_principal(self, *, client_id: str, client_secret: str, azure_tenant_id: str,
                                   subscription_id: str) -> dict:
        if not client_secret:
            raise PermanentInfraError("The service principal has no client secret.",
                                      hint="Register the tenant again with servicePrincipal.clientSecret.")
        return {"clientId": client_id, "subscriptionId": subscription_id}


class SimulatedObservability(_Part):
    def ensure_pipelines(self, spec: TenantSpec) -> dict:
        where = self.cloud.kubernetes.location(spec)
        resources = _put(spec.slug, where, [("LogPipeline", namespaced(spec, LOG_PIPELINE), None),
                                            ("TracePipeline", namespaced(spec, TRACE_PIPELINE), None)])
        return {"logs": namespaced(spec, LOG_PIPELINE), "traces": namespaced(spec, TRACE_PIPELINE),
                "resources": resources}

    def delete_pipelines(self, spec: TenantSpec) -> None:
        where = self.cloud.kubernetes.location(spec)
        _delete("TracePipeline", where, namespaced(spec, TRACE_PIPELINE))
        _delete("LogPipeline", where, namespaced(spec, LOG_PIPELINE))


class SimulatedVerify(_Part):
    def check(self, spec: TenantSpec) -> dict:
        """Healthy when the namespace exists, no workload is scaled to zero and the ingress is not blocked."""
        with connection.cursor() as cursor:
            cursor.execute(CHECK_SQL, {"location": self.cloud.kubernetes.location(spec), "namespace": spec.namespace,
                                       **name_range(f"{spec.namespace}/"), "kinds": list(WORKLOAD_KINDS),
                                       "ingress": namespaced(spec, INGRESS)})
            namespace, stopped, blocked = cursor.fetchone()
        if not namespace:
            raise TransientInfraError(f"Namespace {spec.namespace} does not exist yet.")
        if stopped:
            raise TransientInfraError(f"Workloads scaled to zero in {spec.namespace}: {', '.join(stopped)}.",
                                      hint="The tenant is suspended or its workloads were not restored.")
        if blocked:
            raise TransientInfraError(f"https://{spec.dns_zone}/healthz answered 503: the ingress is blocked.",
                                      hint="The tenant's access was not restored.")
        return {"endpoints": [f"https://{host}/healthz" for host in spec.hosts], "healthy": True}


# --- the cloud ----------------------------------------------------------------------------------------------

class SimulatedCloud:
    """One simulated system per driver interface, with a job's fault plan."""

    name = "simulated"

    def __init__(self, *, time_scale: float, faults: dict | None = None, fault_rate: float = 0.0,
                 max_retries: int = 3, tenant_id: str | None = None, shared_cluster: str | None = None):
        self.time_scale = time_scale
        self.faults = faults or {}
        self.fault_rate = fault_rate
        self.max_retries = max_retries
        self.tenant_id = tenant_id
        # Where a spec without a cluster lives, as the real drivers' default cluster.
        self.shared_cluster = shared_cluster or defaults.MATIH_SHARED_CLUSTER_NAME
        self.kubernetes = SimulatedKubernetes(self)
        self.helm = SimulatedHelm(self)
        self.dns = SimulatedDns(self)
        self.terraform = SimulatedTerraform(self)
        self.lock = SimulatedLock(self)
        self.database = SimulatedDatabase(self)
        self.credentials = SimulatedCredentials(self)
        self.observability = SimulatedObservability(self)
        self.verify = SimulatedVerify(self)

    # --- the step's time and faults ------------------------------------------------------
    def _retry_path(self) -> str:
        return f"/api/v1/tenants/{self.tenant_id or '{id}'}/provisioning/retry"

    def before_step(self, step: str, attempt: int, nominal_seconds: float) -> None:
        fault = self.faults.get(step)
        if fault is not None:
            if fault.get("mode") == "permanent":
                raise PermanentInfraError(
                    f"Simulated permanent failure of {step}.",
                    provider_message="simulated: the provider refused the request",
                    hint=f"Retry without the fault: POST {self._retry_path()} with "
                         '{"simulate": {"faults": {}}} (a new simulate block replaces the job\'s faults).',
                )
            times = int(fault.get("times", 1))
            if attempt <= times:
                if times > self.max_retries:
                    hint = (f"This fault fails the first {times} attempts, but a job retries only "
                            f"{self.max_retries} times: the job will run out of retries and roll back. "
                            f"To let it succeed, retry with a smaller 'times': POST {self._retry_path()} "
                            'with {"simulate": {"faults": {}}}.')
                else:
                    hint = f"It clears on its own: the fault fails the first {times} attempts."
                raise TransientInfraError(
                    f"Simulated transient failure of {step} (attempt {attempt}).",
                    provider_message="simulated: 503 Service Unavailable",
                    hint=hint,
                )
        if self.fault_rate and random.random() < self.fault_rate:
            raise TransientInfraError(
                f"Simulated random failure of {step} (MATIH_SIM_FAULT_RATE).",
                provider_message="simulated: 500 Internal Server Error",
                hint="Random faults clear on a retry; set MATIH_SIM_FAULT_RATE=0 to turn them off.",
            )
        if self.time_scale > 0:
            time.sleep(nominal_seconds * self.time_scale)
