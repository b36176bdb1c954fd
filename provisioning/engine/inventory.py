"""The inventory's writes: what a step made or removed, recorded with the step's own commit.

A step's outputs name the resources it created or found ("resources": [{kind, name, location}])
and what it removed ("removed": selectors). A selector matches the tenant's live resources on
every field it gives, each optional: kind, name, location, step (the step that made it), job,
prefix (a name prefix, e.g. "tenant-acme/" for everything in a namespace). A selector with no
field matches nothing. A resource exists once at a time (the first step that records it keeps
it); a removed one can be made again.
"""
from __future__ import annotations

import json

from provisioning.models import TenantResource

INVENTORY = TenantResource._meta.db_table

_MATCH = """(r.kind IS NOT NULL OR r.name IS NOT NULL OR r.location IS NOT NULL OR r.step IS NOT NULL
         OR r.prefix IS NOT NULL OR r.job IS NOT NULL)
     AND (r.kind IS NULL OR t.kind = r.kind) AND (r.name IS NULL OR t.name = r.name)
     AND (r.location IS NULL OR t.location = r.location) AND (r.step IS NULL OR t.step = r.step)
     AND (r.job IS NULL OR t.job_id = r.job)
     AND (r.prefix IS NULL OR t.name LIKE r.prefix || '%%')"""


def ctes(job_cte: str = "j") -> str:
    """The two CTEs that record a step's inventory in the statement of its success (`job_cte`
    names the CTE of the job's row, with tenant_id; parameters: job, name, resources, removed).
    The removal reads only the tenant's live rows (its tenant is the index's first column, given
    as a value, not as a join the planner may turn inside out), and nothing when nothing is removed:
    a step's success costs the same on a platform of ten tenants or of ten thousand."""
    return f""", inventory_made AS (
    INSERT INTO {INVENTORY} (tenant_id, kind, name, location, job_id, step, created_at, removed_by_step)
    SELECT {job_cte}.tenant_id, r.kind, r.name, coalesce(r.location, ''), %(job)s, %(name)s, now(), ''
    FROM {job_cte}, jsonb_to_recordset(%(resources)s) AS r(kind text, name text, location text)
    WHERE r.kind IS NOT NULL AND r.name IS NOT NULL
    ON CONFLICT (tenant_id, kind, location, name) WHERE removed_at IS NULL DO NOTHING
), inventory_removed AS (
    UPDATE {INVENTORY} t SET removed_at = now(), removed_by_job_id = %(job)s, removed_by_step = %(name)s
    FROM jsonb_to_recordset(%(removed)s) AS r(kind text, name text, location text, step text, prefix text, job uuid)
    WHERE jsonb_array_length(%(removed)s) > 0 AND t.removed_at IS NULL
      AND t.tenant_id = (SELECT tenant_id FROM {job_cte}) AND {_MATCH}
)"""


def params(outputs: dict | None) -> dict:
    """The `resources` and `removed` parameters from a step's outputs."""
    from psycopg.types.json import Jsonb

    outputs = outputs or {}
    return {"resources": Jsonb(_clean(outputs.get("resources"))), "removed": Jsonb(_clean(outputs.get("removed")))}


def _clean(items) -> list[dict]:
    return [dict(item) for item in (items or []) if isinstance(item, dict)]


def record(cursor, *, tenant_id, job_id, step: str, outputs: dict | None) -> None:
    """The same, as a statement of its own (for compensations, inside their transaction)."""
    cursor.execute(f"WITH j AS (SELECT %(tenant)s::uuid AS tenant_id){ctes('j')} SELECT 1",
                   {"tenant": str(tenant_id), "job": str(job_id), "name": step, **params(outputs)})


def undone(job_id, step: str) -> dict:
    """What an undone step leaves: nothing it made (the selector of the resources it recorded)."""
    return {"removed": [{"job": str(job_id), "step": step}]}


def dumps(resources: list[dict]) -> str:
    return json.dumps(resources)
