"""The real database driver: a role and a schema per tenant on the data-plane PostgreSQL.

FREE and PROFESSIONAL tenants share the data-plane database: each gets a LOGIN
role and a schema it owns (its search_path), and nothing on anyone else's.
ENTERPRISE tenants also get a database of their own, owned by their role, with
the schema inside it.

`ensure_tenant_database` generates a new password every time it runs and sets
it on the role, so the password it returns is always the one that works (a
redelivered step writes the new one into the tenant's Secret). The password is
returned to the caller only: it is never logged, and statements carrying it are
composed client-side with psycopg.sql (identifiers with sql.Identifier, the
password with sql.Literal) because DDL takes no bind parameters.

`drop_tenant_database` is the compensation: ends the role's sessions, drops the
database (ENTERPRISE) or the schema, revokes what the role was granted, drops
the role. Anything already gone is success.
"""
from __future__ import annotations

import hashlib
import logging
import secrets
from contextlib import contextmanager
from urllib.parse import urlparse

import psycopg
from psycopg import errors, sql

from deploy.errors import InfraError, PermanentInfraError, TransientInfraError
from deploy.interfaces import TenantSpec

logger = logging.getLogger(__name__)

MAX_IDENTIFIER = 63  # PostgreSQL's NAMEDATALEN - 1: longer names are silently truncated
CONNECTION_LIMITS = {"FREE": 10, "PROFESSIONAL": 50, "ENTERPRISE": 200}


def tenant_identifier(slug: str) -> str:
    """`tenant_{slug}` with underscores; a long slug keeps a hash so two tenants never collide."""
    name = f"tenant_{slug.replace('-', '_')}"
    if len(name) <= MAX_IDENTIFIER:
        return name
    digest = hashlib.sha1(slug.encode()).hexdigest()[:8]
    return f"{name[:MAX_IDENTIFIER - 9]}_{digest}"


def classify_database_error(exc: Exception, what: str) -> InfraError:
    message = str(exc).strip()
    if isinstance(exc, (errors.InsufficientPrivilege, errors.InvalidAuthorizationSpecification,
                        errors.InvalidPassword)):
        return PermanentInfraError(f"PostgreSQL refused {what}", provider_message=message,
                                   hint="the data-plane user needs CREATEROLE and CREATEDB "
                                        "(MATIH_DATAPLANE_DATABASE_URL)")
    if isinstance(exc, (psycopg.OperationalError, errors.ObjectInUse, errors.LockNotAvailable,
                        errors.QueryCanceled, errors.DeadlockDetected, errors.SerializationFailure)):
        return TransientInfraError(f"PostgreSQL unavailable or busy during {what}", provider_message=message,
                                   hint="the data-plane database was unreachable or busy; retrying may succeed")
    return PermanentInfraError(f"PostgreSQL rejected {what}", provider_message=message)


class PostgresTenantDatabases:
    """DatabaseDriver on one data-plane PostgreSQL server."""

    def __init__(self, url: str, *, connect_timeout: int = 10, lock_timeout_ms: int = 10000):
        self.url = url
        self.connect_timeout = connect_timeout
        self.lock_timeout_ms = lock_timeout_ms
        parts = urlparse(url)
        self.database = (parts.path or "/").lstrip("/") or "postgres"
        self.host = parts.hostname or ""
        self.port = parts.port or 5432

    # --- names -------------------------------------------------------------------------------

    @staticmethod
    def names(spec: TenantSpec) -> dict[str, str | None]:
        name = tenant_identifier(spec.slug)
        dedicated = spec.tier.upper() == "ENTERPRISE"
        return {"role": name, "schema": name, "database": name if dedicated else None}

    # --- DatabaseDriver ---------------------------------------------------------------------------

    def ensure_tenant_database(self, spec: TenantSpec) -> dict:
        names = self.names(spec)
        role, schema, own_database = names["role"], names["schema"], names["database"]
        password = secrets.token_urlsafe(32)
        limit = CONNECTION_LIMITS.get(spec.tier.upper(), 10)
        try:
            with self._connect() as conn:
                self._ensure_role(conn, role, password, limit)
                if own_database:
                    self._ensure_database(conn, own_database, role)
                else:
                    self._grant_connect(conn, self.database, role)
            with self._connect(own_database) as conn:
                self._ensure_schema(conn, schema, role)
        except psycopg.Error as exc:
            raise classify_database_error(exc, f"creating the database of tenant {spec.slug}") from exc
        database = own_database or self.database
        logger.info("tenant %s database ready: role %s, schema %s in %s", spec.slug, role, schema, database)
        return {"role": role, "schema": schema, "database": database, "host": self.host, "port": self.port,
                "password": password}

    def drop_tenant_database(self, spec: TenantSpec) -> None:
        names = self.names(spec)
        role, schema, own_database = names["role"], names["schema"], names["database"]
        try:
            with self._connect() as conn:
                conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                             "WHERE usename = %s AND pid <> pg_backend_pid()", (role,))
                if own_database:
                    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(own_database)))
                else:
                    conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
                if self._role_exists(conn, role):
                    # Revokes its grants here and on shared objects (the database's CONNECT).
                    conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
                    conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
        except psycopg.Error as exc:
            raise classify_database_error(exc, f"dropping the database of tenant {spec.slug}") from exc
        logger.info("tenant %s database dropped", spec.slug)

    # --- steps ----------------------------------------------------------------------------------

    @contextmanager
    def _connect(self, database: str | None = None):
        kwargs = {"autocommit": True, "connect_timeout": self.connect_timeout}
        if database:
            kwargs["dbname"] = database
        try:
            conn = psycopg.connect(self.url, **kwargs)
        except psycopg.Error as exc:
            raise classify_database_error(exc, "connecting to the data-plane PostgreSQL") from exc
        try:
            conn.execute(sql.SQL("SET lock_timeout = {}").format(sql.Literal(self.lock_timeout_ms)))
            yield conn
        finally:
            conn.close()

    @staticmethod
    def _role_exists(conn, role: str) -> bool:
        return conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is not None

    def _ensure_role(self, conn, role: str, password: str, limit: int) -> None:
        options = sql.SQL("LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION CONNECTION LIMIT {} PASSWORD {}")
        options = options.format(sql.Literal(limit), sql.Literal(password))
        if not self._role_exists(conn, role):
            try:
                conn.execute(sql.SQL("CREATE ROLE {} ").format(sql.Identifier(role)) + options)
                return
            except errors.DuplicateObject:
                pass  # created concurrently: set its password below
        conn.execute(sql.SQL("ALTER ROLE {} ").format(sql.Identifier(role)) + options)

    @staticmethod
    def _ensure_database(conn, database: str, role: str) -> None:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
        if not exists:
            try:
                conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(database),
                                                                           sql.Identifier(role)))
            except errors.DuplicateDatabase:
                pass
        # Only its owner (and superusers) may connect to a tenant's own database.
        conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(database)))

    @staticmethod
    def _grant_connect(conn, database: str, role: str) -> None:
        conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(database),
                                                                          sql.Identifier(role)))

    @staticmethod
    def _ensure_schema(conn, schema: str, role: str) -> None:
        try:
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {} AUTHORIZATION {}").format(
                sql.Identifier(schema), sql.Identifier(role)))
        except errors.UniqueViolation:
            pass  # created concurrently
        conn.execute(sql.SQL("ALTER SCHEMA {} OWNER TO {}").format(sql.Identifier(schema), sql.Identifier(role)))
        conn.execute(sql.SQL("REVOKE ALL ON SCHEMA {} FROM PUBLIC").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("ALTER ROLE {} SET search_path = {}").format(sql.Identifier(role),
                                                                          sql.Identifier(schema)))
