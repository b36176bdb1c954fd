"""The database driver after provisioning, on a real PostgreSQL: export, the ENTERPRISE data
migration (copy, verify, undo, decommission), and the leftover scan.

The server is DATABASE_URL's (the machine's PostgreSQL, or the embedded one); one
test also starts an embedded PostgreSQL 16 of its own (pgserver), so the choice
of pg_dump by server version is tested on two majors.
"""
from __future__ import annotations

import hashlib
import os
import stat
import uuid

import psycopg
import pytest
from django.conf import settings

from deploy.database import PostgresTenantDatabases, find_pg_bin, tenant_identifier
from deploy.errors import PermanentInfraError
from tests.drivers.conftest import make_spec
from tests.drivers.test_database import admin, as_tenant, exists


@pytest.fixture
def dataplane():
    return PostgresTenantDatabases(settings.DATABASE_URL)


@pytest.fixture
def tenant(dataplane):
    """A tenant's two specs (its shared tier and ENTERPRISE, one slug); everything dropped afterwards."""
    slug = f"t{uuid.uuid4().hex[:12]}"
    shared, dedicated = make_spec("PROFESSIONAL", slug=slug), make_spec("ENTERPRISE", slug=slug)
    yield shared, dedicated
    dataplane.drop_tenant_database(dedicated)
    dataplane.drop_tenant_database(shared)
    dataplane.drop_shared_schema(shared)


def server_major() -> int:
    with admin() as conn:
        return int(conn.execute("SHOW server_version_num").fetchone()[0]) // 10000


def fill(created: dict) -> None:
    """The tenant's own tables and rows, made as its role (so it owns them), of several column types."""
    with as_tenant(created) as conn:
        conn.execute("CREATE TABLE reports (id serial PRIMARY KEY, title text NOT NULL, amount numeric(12, 2), "
                     "created timestamptz DEFAULT now(), tags text[])")
        conn.execute("CREATE TABLE events (id bigint PRIMARY KEY, payload jsonb, ratio double precision)")
        conn.execute("CREATE TABLE empty_table (x int)")
        conn.execute("CREATE VIEW big_reports AS SELECT * FROM reports WHERE amount > 100")
        conn.execute("INSERT INTO reports (title, amount, tags) SELECT 'report ' || i, i * 10.5, "
                     "ARRAY['q' || (i % 4)] FROM generate_series(1, 250) AS i")
        conn.execute("INSERT INTO events SELECT i, jsonb_build_object('n', i, 'ok', i % 2 = 0), i / 7.0 "
                     "FROM generate_series(1, 40) AS i")


def upgraded(dataplane, shared, dedicated) -> tuple[dict, dict]:
    """A shared tenant with data, and its dedicated database set up with the same password."""
    on_shared = dataplane.ensure_tenant_database(shared)
    fill(on_shared)
    on_dedicated = dataplane.ensure_tenant_database(dedicated, password=on_shared["password"])
    return on_shared, on_dedicated


# --- the inventory ------------------------------------------------------------------------------

def test_setup_reports_the_role_the_schema_and_the_database_on_the_server(dataplane, tenant):
    shared, dedicated = tenant
    name = tenant_identifier(shared.slug)
    server = f"{dataplane.host}:{dataplane.port}"

    assert dataplane.ensure_tenant_database(shared)["resources"] == [
        {"kind": "DatabaseRole", "name": name, "location": server},
        {"kind": "DatabaseSchema", "name": name, "location": f"{server}/{dataplane.database}"}]
    assert dataplane.ensure_tenant_database(dedicated)["resources"] == [
        {"kind": "DatabaseRole", "name": name, "location": server},
        {"kind": "Database", "name": name, "location": server},
        {"kind": "DatabaseSchema", "name": name, "location": f"{server}/{name}"}]


# --- export ------------------------------------------------------------------------------------

def test_export_dumps_the_tenants_schema_with_its_checksum(dataplane, tenant, tmp_path):
    shared, _ = tenant
    created = dataplane.ensure_tenant_database(shared)
    fill(created)
    neighbour = make_spec("PROFESSIONAL", slug=f"n{uuid.uuid4().hex[:12]}")
    try:
        with as_tenant(dataplane.ensure_tenant_database(neighbour)) as conn:
            conn.execute("CREATE TABLE neighbours_secrets (v text)")

        result = dataplane.export_tenant_data(shared, str(tmp_path / "exports"))
    finally:
        dataplane.drop_tenant_database(neighbour)

    path = result["path"]
    content = open(path, "rb").read()
    assert os.path.basename(path).startswith(f"{shared.slug}-") and path.endswith("Z.sql")
    assert result["sha256"] == hashlib.sha256(content).hexdigest() and result["bytes"] == len(content)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600  # the tenant's data, readable by the platform only
    text = content.decode()
    schema = created["schema"]
    assert f"CREATE TABLE {schema}.reports" in text and f"COPY {schema}.reports" in text
    assert "report 250" in text and "neighbours_secrets" not in text
    assert f"Dumped by pg_dump version {server_major()}." in text  # the server's own major
    assert os.listdir(tmp_path / "exports") == [os.path.basename(path)]  # nothing partial left


def test_export_of_an_enterprise_tenant_dumps_its_own_database(dataplane, tenant, tmp_path):
    _, dedicated = tenant
    created = dataplane.ensure_tenant_database(dedicated)
    with as_tenant(created) as conn:
        conn.execute("CREATE TABLE ledger (id int, note text)")
        conn.execute("INSERT INTO ledger VALUES (1, 'enterprise row')")

    result = dataplane.export_tenant_data(dedicated, str(tmp_path))

    text = open(result["path"]).read()
    assert result["database"] == created["database"]
    assert "enterprise row" in text and f"CREATE TABLE {created['schema']}.ledger" in text


def test_a_tenant_that_never_had_a_database_has_nothing_to_export(dataplane, tenant, tmp_path):
    shared, _ = tenant
    result = dataplane.export_tenant_data(shared, str(tmp_path))
    assert result["path"] is None and "does not exist" in result["reason"]
    assert list(tmp_path.iterdir()) == []


# --- the ENTERPRISE data migration --------------------------------------------------------------

def test_copy_to_dedicated_copies_every_table_and_verifies_each(dataplane, tenant):
    shared, dedicated = tenant
    on_shared, on_dedicated = upgraded(dataplane, shared, dedicated)

    result = dataplane.copy_to_dedicated(shared, dedicated)

    source = dataplane.table_fingerprints(shared)
    assert set(source) == {"reports", "events", "empty_table"}
    assert source["reports"]["rows"] == 250 and source["events"]["rows"] == 40
    assert result["tables"] == source == dataplane.table_fingerprints(dedicated)
    with as_tenant(on_dedicated) as conn:  # the tenant works in its own database, on its own tables
        assert conn.execute("SELECT current_database()").fetchone()[0] == on_dedicated["database"]
        assert conn.execute("SELECT count(*) FROM big_reports").fetchone()[0] == 241
        assert conn.execute("INSERT INTO reports (title) VALUES ('after') RETURNING id").fetchone()[0] == 251
        owner = conn.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'events' "
                             "AND schemaname = current_schema()").fetchone()[0]
    assert owner == on_dedicated["role"]
    with as_tenant(on_shared) as conn:  # the shared half is untouched, and still works with its password
        assert conn.execute("SELECT count(*) FROM reports").fetchone()[0] == 250


def test_a_rerun_of_the_copy_replaces_it(dataplane, tenant):
    shared, dedicated = tenant
    _, on_dedicated = upgraded(dataplane, shared, dedicated)
    dataplane.copy_to_dedicated(shared, dedicated)
    with as_tenant(on_dedicated) as conn:
        conn.execute("INSERT INTO reports (title) VALUES ('written to the copy too early')")

    again = dataplane.copy_to_dedicated(shared, dedicated)

    assert again["tables"]["reports"]["rows"] == 250
    assert dataplane.table_fingerprints(dedicated) == dataplane.table_fingerprints(shared)


def test_a_tampered_copy_is_a_permanent_error_naming_the_table(dataplane, tenant):
    shared, dedicated = tenant
    _, on_dedicated = upgraded(dataplane, shared, dedicated)
    dataplane.copy_to_dedicated(shared, dedicated)
    with as_tenant(on_dedicated) as conn:
        conn.execute("UPDATE events SET ratio = ratio + 1e-9 WHERE id = 7")  # same count, other content

    with pytest.raises(PermanentInfraError) as caught:
        dataplane.verify_copy(shared, dedicated)
    assert f"{on_dedicated['schema']}.events does not match" in caught.value.message
    assert "40 rows" in caught.value.message

    with as_tenant(on_dedicated) as conn:
        conn.execute("DROP TABLE empty_table")
    with pytest.raises(PermanentInfraError) as caught:
        dataplane.verify_copy(shared, dedicated)
    assert "empty_table is missing from the copy" in caught.value.message


def test_rows_written_to_the_source_during_the_copy_fail_its_verification(dataplane, tenant, monkeypatch):
    shared, dedicated = tenant
    on_shared, _ = upgraded(dataplane, shared, dedicated)
    run_tool = dataplane._run_tool

    def dump_then_write(tool, database, args, what):
        run_tool(tool, database, args, what)
        if tool == "pg_dump":  # the tenant keeps writing after the dump's snapshot
            with as_tenant(on_shared) as conn:
                conn.execute("INSERT INTO reports (title) VALUES ('late write')")

    monkeypatch.setattr(dataplane, "_run_tool", dump_then_write)
    with pytest.raises(PermanentInfraError) as caught:
        dataplane.copy_to_dedicated(shared, dedicated)
    assert "reports does not match: source 251 rows" in caught.value.message
    assert "copy 250 rows" in caught.value.message


def test_the_copy_needs_the_dedicated_database_first(dataplane, tenant):
    shared, dedicated = tenant
    fill(dataplane.ensure_tenant_database(shared))
    with pytest.raises(PermanentInfraError) as caught:
        dataplane.copy_to_dedicated(shared, dedicated)
    assert "does not exist" in caught.value.message and "ensure_tenant_database" in caught.value.hint


def test_undoing_an_upgrade_removes_the_copy_and_the_database_but_never_the_shared_data(dataplane, tenant):
    shared, dedicated = tenant
    on_shared, on_dedicated = upgraded(dataplane, shared, dedicated)
    dataplane.copy_to_dedicated(shared, dedicated)

    dataplane.drop_dedicated_copy(dedicated)
    assert dataplane.table_fingerprints(dedicated) == {}
    assert exists("SELECT 1 FROM pg_namespace WHERE nspname = %s", on_dedicated["schema"],
                  database=on_dedicated["database"])  # as ensure_tenant_database left it
    dataplane.drop_tenant_database(dedicated)
    dataplane.drop_tenant_database(dedicated)  # a redelivered compensation

    assert not exists("SELECT 1 FROM pg_database WHERE datname = %s", on_dedicated["database"])
    with as_tenant(on_shared) as conn:  # the role, its password and its data are where they were
        assert conn.execute("SELECT count(*) FROM reports").fetchone()[0] == 250


def test_after_the_cut_over_the_shared_schema_goes_and_the_role_stays(dataplane, tenant):
    shared, dedicated = tenant
    on_shared, on_dedicated = upgraded(dataplane, shared, dedicated)
    dataplane.copy_to_dedicated(shared, dedicated)

    dataplane.drop_shared_schema(shared)
    dataplane.drop_shared_schema(shared)

    assert not exists("SELECT 1 FROM pg_namespace WHERE nspname = %s", on_shared["schema"])
    with as_tenant(on_dedicated) as conn:
        assert conn.execute("SELECT count(*) FROM reports").fetchone()[0] == 250
    assert dataplane.leftovers(dedicated) == [
        {"kind": "DatabaseRole", "name": on_shared["role"], "location": dataplane.server},
        {"kind": "Database", "name": on_dedicated["database"], "location": dataplane.server}]


def test_dropping_the_shared_half_keeps_the_role_while_the_dedicated_database_exists(dataplane, tenant):
    shared, dedicated = tenant
    _, on_dedicated = upgraded(dataplane, shared, dedicated)

    dataplane.drop_tenant_database(shared)

    with as_tenant(on_dedicated) as conn:
        assert conn.execute("SELECT current_user").fetchone()[0] == on_dedicated["role"]
    dataplane.drop_tenant_database(dedicated)
    assert dataplane.leftovers(dedicated) == []


# --- the leftover scan ---------------------------------------------------------------------------

def test_the_leftover_scan_finds_a_planted_role_schema_and_database(dataplane, tenant):
    shared, dedicated = tenant
    name = tenant_identifier(shared.slug)
    assert dataplane.leftovers(shared) == []
    with admin() as conn:  # made by hand: no step ever recorded them
        conn.execute(f'CREATE ROLE "{name}"')
        conn.execute(f'CREATE SCHEMA "{name}" AUTHORIZATION "{name}"')
        conn.execute(f'CREATE DATABASE "{name}" OWNER "{name}"')

    found = dataplane.leftovers(shared)

    assert found == [{"kind": "DatabaseRole", "name": name, "location": dataplane.server},
                     {"kind": "Database", "name": name, "location": dataplane.server},
                     {"kind": "DatabaseSchema", "name": name, "location": f"{dataplane.server}/{dataplane.database}"}]
    assert dataplane.leftovers(dedicated) == found  # the scan does not depend on the tier

    dataplane.drop_tenant_database(dedicated)
    dataplane.drop_tenant_database(shared)
    assert dataplane.leftovers(shared) == []


# --- pg_dump by the server's version ---------------------------------------------------------------

def test_the_pg_tools_are_picked_by_the_servers_major_version(tmp_path):
    major = server_major()
    directory = find_pg_bin(major)
    assert f"(PostgreSQL) {major}." in os.popen(f"{directory}/pg_dump --version").read()
    assert os.path.exists(os.path.join(directory, "pg_restore"))
    with pytest.raises(PermanentInfraError) as caught:
        find_pg_bin(99)  # no pg_dump that new: an older one would refuse the server
    assert "postgresql-client-99" in caught.value.hint and "MATIH_PG_DUMP" in caught.value.hint
    assert find_pg_bin(major, configured=os.path.join(directory, "pg_dump")) == directory


@pytest.fixture(scope="module")
def postgres16(tmp_path_factory):
    """An embedded PostgreSQL 16 (pgserver) of this module's own."""
    import warnings

    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    pgserver = pytest.importorskip("pgserver")
    server = pgserver.get_server(tmp_path_factory.mktemp("pg16"), cleanup_mode="stop")
    yield server.get_uri()
    server.cleanup()


def test_export_and_copy_on_an_embedded_postgresql_16_use_its_own_tools(postgres16, tmp_path):
    with psycopg.connect(postgres16, autocommit=True) as conn:
        assert conn.execute("SHOW server_version_num").fetchone()[0].startswith("16")
    dataplane = PostgresTenantDatabases(postgres16)
    slug = f"t{uuid.uuid4().hex[:12]}"
    shared, dedicated = make_spec("FREE", slug=slug), make_spec("ENTERPRISE", slug=slug)
    created = dataplane.ensure_tenant_database(shared)
    with psycopg.connect(postgres16, autocommit=True) as conn:
        conn.execute(f'SET ROLE "{created["role"]}"')
        conn.execute(f'CREATE TABLE "{created["schema"]}".notes AS SELECT i AS id, md5(i::text) AS body '
                     "FROM generate_series(1, 30) AS i")

    exported = dataplane.export_tenant_data(shared, str(tmp_path))
    dataplane.ensure_tenant_database(dedicated)
    copied = dataplane.copy_to_dedicated(shared, dedicated)

    assert "Dumped by pg_dump version 16." in open(exported["path"]).read()
    assert copied["tables"] == {"notes": dataplane.table_fingerprints(dedicated)["notes"]}
    assert copied["tables"]["notes"]["rows"] == 30
