"""The data-plane database driver on a real PostgreSQL (the server of DATABASE_URL)."""
from __future__ import annotations

import logging
import socket
import uuid

import psycopg
import pytest
from django.conf import settings

from deploy.database import PostgresTenantDatabases, tenant_identifier
from deploy.errors import TransientInfraError
from tests.drivers.conftest import make_spec


@pytest.fixture
def dataplane():
    return PostgresTenantDatabases(settings.DATABASE_URL)


@pytest.fixture
def slugs(dataplane):
    """Unique tenant slugs for this test; whatever they made is dropped afterwards."""
    made = []

    def new(tier: str = "PROFESSIONAL"):
        spec = make_spec(tier, slug=f"t{uuid.uuid4().hex[:12]}")
        made.append(spec)
        return spec

    yield new
    for spec in made:
        dataplane.drop_tenant_database(spec)


def admin(database: str | None = None):
    kwargs = {"autocommit": True}
    if database:
        kwargs["dbname"] = database
    return psycopg.connect(settings.DATABASE_URL, **kwargs)


def as_tenant(created: dict):
    """A connection as the tenant's role, with its password, the way its services connect."""
    return psycopg.connect(settings.DATABASE_URL, user=created["role"], password=created["password"],
                           dbname=created["database"], autocommit=True)


def exists(query: str, *args, database: str | None = None) -> bool:
    with admin(database) as conn:
        return conn.execute(query, args).fetchone() is not None


def test_tenant_gets_a_role_and_a_schema_it_works_in(dataplane, slugs):
    spec = slugs()
    created = dataplane.ensure_tenant_database(spec)

    assert created["role"] == created["schema"] == tenant_identifier(spec.slug)
    assert created["database"] == dataplane.database
    assert len(created["password"]) >= 32
    with as_tenant(created) as conn:
        conn.execute("CREATE TABLE reports (id int)")  # lands in its schema via search_path
        assert conn.execute("SELECT current_schema()").fetchone()[0] == created["schema"]
    assert exists("SELECT 1 FROM pg_tables WHERE schemaname = %s AND tablename = 'reports'", created["schema"])


def test_redelivered_setup_creates_nothing_twice_and_the_new_password_is_the_one_that_works(dataplane, slugs):
    spec = slugs()
    first = dataplane.ensure_tenant_database(spec)
    second = dataplane.ensure_tenant_database(spec)

    assert {k: v for k, v in first.items() if k != "password"} == {k: v for k, v in second.items() if k != "password"}
    assert first["password"] != second["password"]
    with admin() as conn:
        hashes = conn.execute("SELECT count(*) FROM pg_roles WHERE rolname = %s", (first["role"],)).fetchone()
    assert hashes == (1,)
    with as_tenant(second) as conn:
        assert conn.execute("SELECT current_user").fetchone()[0] == second["role"]


def test_a_tenant_cannot_read_another_tenants_schema(dataplane, slugs):
    alice, bob = dataplane.ensure_tenant_database(slugs()), dataplane.ensure_tenant_database(slugs())
    with as_tenant(bob) as conn:
        conn.execute("CREATE TABLE secrets (v text)")
    with as_tenant(alice) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f'SELECT * FROM "{bob["schema"]}".secrets')


def test_drop_removes_schema_and_role_and_repeats_harmlessly(dataplane, slugs):
    spec = slugs()
    created = dataplane.ensure_tenant_database(spec)
    with as_tenant(created) as conn:
        conn.execute("CREATE TABLE t (x int)")

    dataplane.drop_tenant_database(spec)
    dataplane.drop_tenant_database(spec)

    assert not exists("SELECT 1 FROM pg_namespace WHERE nspname = %s", created["schema"])
    assert not exists("SELECT 1 FROM pg_roles WHERE rolname = %s", created["role"])


def test_enterprise_tenant_gets_a_database_of_its_own(dataplane, slugs):
    spec = slugs("ENTERPRISE")
    created = dataplane.ensure_tenant_database(spec)

    assert created["database"] == created["role"] != dataplane.database
    assert exists("SELECT 1 FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba "
                  "WHERE d.datname = %s AND r.rolname = %s", created["database"], created["role"])
    assert exists("SELECT 1 FROM pg_namespace WHERE nspname = %s", created["schema"], database=created["database"])
    with as_tenant(created) as conn:
        conn.execute("CREATE TABLE facts (x int)")

    dataplane.drop_tenant_database(spec)
    assert not exists("SELECT 1 FROM pg_database WHERE datname = %s", created["database"])
    assert not exists("SELECT 1 FROM pg_roles WHERE rolname = %s", created["role"])


def test_the_password_is_never_logged(dataplane, slugs, caplog):
    caplog.set_level(logging.DEBUG)
    created = dataplane.ensure_tenant_database(slugs())
    assert created["password"] not in caplog.text
    assert all(created["password"] not in str(record.args) for record in caplog.records)


def test_long_slugs_get_distinct_names_within_postgres_limits():
    a, b = "a" * 60 + "xyz", "a" * 60 + "xyw"
    assert len(tenant_identifier(a)) <= 63 and len(tenant_identifier(b)) <= 63
    assert tenant_identifier(a) != tenant_identifier(b)
    assert tenant_identifier("acme-corp") == "tenant_acme_corp"


def test_unreachable_database_is_transient(spec):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    driver = PostgresTenantDatabases(f"postgresql://postgres@127.0.0.1:{port}/matih", connect_timeout=2)
    with pytest.raises(TransientInfraError):
        driver.ensure_tenant_database(spec)
