"""The real database driver: a role and a schema per tenant on the data-plane PostgreSQL.

FREE and PROFESSIONAL tenants share the data-plane database: each gets a LOGIN
role and a schema it owns (its search_path), and nothing on anyone else's.
ENTERPRISE tenants also get a database of their own, owned by their role, with
the schema inside it. A tenant upgraded to ENTERPRISE has both halves for a
while (the shared schema and its own database, one role): the migration copies
the one into the other.

`ensure_tenant_database` generates a new password every time it runs (unless
given one) and sets it on the role, so the password it returns is always the one
that works (a redelivered step writes the new one into the tenant's Secret). The
password is returned to the caller only: it is never logged, and statements
carrying it are composed client-side with psycopg.sql (identifiers with
sql.Identifier, the password with sql.Literal) because DDL takes no bind parameters.

`drop_tenant_database` is the compensation of one half: the shared schema (a
shared tier's spec) or the own database (an ENTERPRISE spec); the role goes only
when the other half does not exist either, so undoing an upgrade never touches
the data the tenant still works on. Anything already gone is success.

The lifecycle after provisioning: `export_tenant_data` (pg_dump, with a sha256),
`copy_to_dedicated` (pg_dump | pg_restore of the schema, verified table by table
with row counts and checksums), `drop_dedicated_copy`, `drop_shared_schema`,
`table_fingerprints` and `leftovers`. pg_dump must not be older than the server:
the tools are picked by the server's major version (see `find_pg_bin`).
"""
from __future__ import annotations

import glob
import hashlib
import logging
import os
import re
import secrets
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import psycopg
from psycopg import errors, sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from deploy import inventory
from deploy.errors import InfraError, PermanentInfraError, TransientInfraError
from deploy.interfaces import TenantSpec

logger = logging.getLogger(__name__)

MAX_IDENTIFIER = 63  # PostgreSQL's NAMEDATALEN - 1: longer names are silently truncated
CONNECTION_LIMITS = {"FREE": 10, "PROFESSIONAL": 50, "ENTERPRISE": 200}
# Session settings that fix how a row prints as text, so a checksum means the same on both sides.
FINGERPRINT_SETTINGS = {"TimeZone": "UTC", "DateStyle": "ISO, MDY", "IntervalStyle": "postgres",
                        "extra_float_digits": "3", "bytea_output": "hex"}
TOOL_VERSION = re.compile(r"\(PostgreSQL\) (\d+)")


def database_address(url: str) -> tuple[str, int]:
    """(host, port) of a PostgreSQL URL; a unix-socket host may be given as ?host=/path."""
    parts = urlparse(url)
    host = parts.hostname or parse_qs(parts.query).get("host", [""])[-1]
    return host, parts.port or 5432


@lru_cache(maxsize=None)
def _tool_major(binary: str) -> int | None:
    try:
        done = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=20, check=False)
    except OSError:
        return None
    match = TOOL_VERSION.search(done.stdout)
    return int(match.group(1)) if match else None


def _candidate_bins(configured: str) -> list[str]:
    """Directories that hold pg_dump: the configured one, the embedded server's, Debian's, PATH's."""
    if configured:
        return [os.path.dirname(configured) or "."]
    candidates = []
    try:
        import importlib.util

        found = importlib.util.find_spec("pgserver")
        if found and found.submodule_search_locations:
            candidates.append(os.path.join(list(found.submodule_search_locations)[0], "pginstall", "bin"))
    except (ImportError, ValueError):
        pass
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    on_path = shutil.which("pg_dump")
    if on_path:
        candidates.append(os.path.dirname(os.path.realpath(on_path)))
    return [c for c in dict.fromkeys(candidates) if os.path.exists(os.path.join(c, "pg_dump"))]


def find_pg_bin(server_major: int, configured: str = "") -> str:
    """The directory of the pg_dump/pg_restore to use with a server of major version `server_major`.

    pg_dump refuses a server newer than itself, and a dump is best made by the
    server's own version: the exact major first, else the oldest newer one.
    `configured` (MATIH_PG_DUMP) is a pg_dump path that must qualify as well.
    """
    found = {}
    for directory in _candidate_bins(configured):
        major = _tool_major(os.path.join(directory, "pg_dump"))
        if major is not None:
            found.setdefault(major, directory)
    if server_major in found:
        return found[server_major]
    newer = sorted(major for major in found if major > server_major)
    if newer:
        return found[newer[0]]
    have = ", ".join(f"{major} ({path})" for major, path in sorted(found.items())) or "none"
    raise PermanentInfraError(f"no pg_dump for PostgreSQL {server_major}", provider_message=f"found: {have}",
                              hint=f"install postgresql-client-{server_major} or set MATIH_PG_DUMP to its pg_dump")


def classify_tool_failure(tool: str, what: str, output: str) -> InfraError:
    tail = "\n".join(output.strip().splitlines()[-15:])
    if re.search(r"could not connect|connection to server .* failed|server closed the connection|"
                 r"timeout expired|the database system is (starting up|shutting down)|could not obtain lock",
                 output, re.IGNORECASE):
        return TransientInfraError(f"{tool} could not finish {what}", provider_message=tail,
                                   hint="the data-plane database was unreachable or busy; retrying may succeed")
    if "server version mismatch" in output:
        return PermanentInfraError(f"{tool} is older than the server during {what}", provider_message=tail,
                                   hint="set MATIH_PG_DUMP to a pg_dump of the server's major version")
    return PermanentInfraError(f"{tool} failed during {what}", provider_message=tail)


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

    def __init__(self, url: str, *, connect_timeout: int = 10, lock_timeout_ms: int = 10000,
                 pg_dump: str = "", tool_timeout: float = 3600):
        self.url = url
        self.connect_timeout = connect_timeout
        self.lock_timeout_ms = lock_timeout_ms
        self.pg_dump = pg_dump  # MATIH_PG_DUMP: empty = pick by the server's version
        self.tool_timeout = tool_timeout
        parts = urlparse(url)
        self.database = (parts.path or "/").lstrip("/") or "postgres"
        self.host, self.port = database_address(url)

    # --- names -------------------------------------------------------------------------------

    @staticmethod
    def names(spec: TenantSpec) -> dict[str, str | None]:
        name = tenant_identifier(spec.slug)
        dedicated = spec.tier.upper() == "ENTERPRISE"
        return {"role": name, "schema": name, "database": name if dedicated else None}

    @property
    def server(self) -> str:
        """Where roles and databases live, as the inventory records it."""
        return f"{self.host}:{self.port}"

    def _database_of(self, spec: TenantSpec) -> str:
        return self.names(spec)["database"] or self.database

    def _resources(self, spec: TenantSpec) -> list[dict]:
        names = self.names(spec)
        resources = [inventory.resource("DatabaseRole", names["role"], self.server)]
        if names["database"]:
            resources.append(inventory.resource("Database", names["database"], self.server))
        resources.append(inventory.resource("DatabaseSchema", names["schema"],
                                            f"{self.server}/{self._database_of(spec)}"))
        return resources

    # --- DatabaseDriver ---------------------------------------------------------------------------

    def ensure_tenant_database(self, spec: TenantSpec, password: str | None = None) -> dict:
        """The role (with `password`, or a new one), the schema, and for ENTERPRISE the database."""
        names = self.names(spec)
        role, schema, own_database = names["role"], names["schema"], names["database"]
        password = password or secrets.token_urlsafe(32)
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
                "password": password, "resources": self._resources(spec)}

    def drop_tenant_database(self, spec: TenantSpec) -> None:
        """One half dropped (the own database for ENTERPRISE, else the shared schema); the role with the last half.

        1. ENTERPRISE: DROP DATABASE ... WITH (FORCE), which ends only that database's sessions.
        2. Shared tiers: end the role's sessions on the shared database, drop the schema.
        3. The role goes (its grants revoked first) only if neither half is left: while a
           tenant is being upgraded, the shared schema it still works on keeps its role.
        """
        names = self.names(spec)
        role, schema, own_database = names["role"], names["schema"], names["database"]
        try:
            with self._connect() as conn:
                if own_database:
                    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(own_database)))
                else:
                    self._end_sessions(conn, role, self.database)
                    conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
                if not self._role_exists(conn, role):
                    pass
                elif not self._role_still_needed(conn, role, schema):
                    self._end_sessions(conn, role, None)
                    # Revokes its grants here and on shared objects (the database's CONNECT).
                    conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
                    conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
                elif not own_database:  # the role stays for its own database: not for the shared one
                    conn.execute(sql.SQL("REVOKE CONNECT ON DATABASE {} FROM {}").format(
                        sql.Identifier(self.database), sql.Identifier(role)))
        except psycopg.Error as exc:
            raise classify_database_error(exc, f"dropping the database of tenant {spec.slug}") from exc
        logger.info("tenant %s database dropped (%s)", spec.slug, own_database or f"schema {schema}")

    # --- the tenant's life after provisioning (LifecycleDatabase) ------------------------------------

    def table_fingerprints(self, spec: TenantSpec) -> dict:
        """{table: {"rows", "checksum"}} of the tenant's schema: the checksum is an md5 over the
        rows' md5s in sorted order, so it depends on the rows and not on their physical order."""
        schema, database = self.names(spec)["schema"], self._database_of(spec)
        try:
            with self._connect(database if database != self.database else None, missing_ok=True) as conn:
                if conn is None:
                    return {}
                for name, value in FINGERPRINT_SETTINGS.items():
                    conn.execute(sql.SQL("SELECT set_config({}, {}, false)").format(sql.Literal(name),
                                                                                   sql.Literal(value)))
                tables = [row[0] for row in conn.execute(
                    "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = %s AND c.relkind IN ('r', 'p') ORDER BY c.relname", (schema,))]
                fingerprints = {}
                for table in tables:
                    rows, checksum = conn.execute(sql.SQL(
                        "SELECT count(*), md5(coalesce(string_agg(md5(t::text), '' ORDER BY md5(t::text)), '')) "
                        "FROM {}.{} AS t").format(sql.Identifier(schema), sql.Identifier(table))).fetchone()
                    fingerprints[table] = {"rows": rows, "checksum": checksum}
        except psycopg.Error as exc:
            raise classify_database_error(exc, f"reading the tables of tenant {spec.slug}") from exc
        return fingerprints

    def export_tenant_data(self, spec: TenantSpec, directory: str) -> dict:
        """pg_dump of the tenant's schema (shared tiers) or database (ENTERPRISE) to `directory`/{slug}-{UTC}.sql.

        1. Nothing to export (the schema or database was never made): {"path": None, ...}.
        2. pg_dump (plain SQL, without owners and grants: the platform's role names mean
           nothing elsewhere) writes a private temporary file in `directory`.
        3. Its sha256 and size are computed, then it is renamed into place: a file under
           the final name is always complete. A rerun writes a new export.
        """
        names = self.names(spec)
        database = self._database_of(spec)
        if not self._exists(names["schema"], database):
            return {"path": None, "bytes": 0, "sha256": None,
                    "reason": f"schema {names['schema']} does not exist in {database}: nothing to export"}
        target = Path(directory)
        target.mkdir(parents=True, exist_ok=True, mode=0o700)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        final = target / f"{spec.slug}-{stamp}.sql"
        fd, partial = tempfile.mkstemp(prefix=f".{spec.slug}-", suffix=".partial", dir=target)
        os.close(fd)  # mkstemp made it 0600; pg_dump writes into it
        try:
            args = ["--format=plain", "--no-owner", "--no-privileges", f"--file={partial}"]
            if not names["database"]:
                args.append(f"--schema={names['schema']}")
            self._run_tool("pg_dump", database, args, f"the export of tenant {spec.slug}")
            digest = hashlib.sha256()
            with open(partial, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
            size = os.path.getsize(partial)
            os.replace(partial, final)
        finally:
            if os.path.exists(partial):
                os.remove(partial)
        logger.info("tenant %s exported to %s (%s bytes)", spec.slug, final, size)
        return {"path": str(final), "bytes": size, "sha256": digest.hexdigest(), "database": database,
                "schema": names["schema"]}

    def copy_to_dedicated(self, source: TenantSpec, target: TenantSpec) -> dict:
        """The tenant's schema in the shared database copied into its dedicated database, then verified.

        1. Both ends must exist: the source schema, and the target database made by
           ensure_tenant_database(target); else a permanent error.
        2. pg_dump -Fc of the schema; in the target, the schema is dropped (a rerun
           replaces the copy) and pg_restore recreates it in one transaction, owners
           and all (one role owns both halves).
        3. The schema's ownership, grants and search_path as ensure_tenant_database sets them.
        4. verify_copy: row counts and checksums table by table.
        """
        src, dst = self.names(source), self.names(target)
        schema, role, src_db, dst_db = src["schema"], dst["role"], self._database_of(source), self._database_of(target)
        if not dst["database"] or dst["database"] == src_db:
            raise PermanentInfraError("the copy needs an ENTERPRISE target with a database of its own",
                                      hint="pass the tenant's ENTERPRISE spec as the target")
        if not self._exists(schema, src_db):
            raise PermanentInfraError(f"no schema {schema} in {src_db} to copy",
                                      hint="the tenant's shared database was never set up, or is already gone")
        if not self._exists(None, dst_db):
            raise PermanentInfraError(f"the dedicated database {dst_db} does not exist",
                                      hint="set up the dedicated database (ensure_tenant_database) before the copy")
        with tempfile.TemporaryDirectory(prefix="matih-copy-") as scratch:
            archive = os.path.join(scratch, f"{schema}.dump")
            self._run_tool("pg_dump", src_db, ["--format=custom", f"--schema={schema}", f"--file={archive}"],
                           f"the copy of tenant {source.slug}")
            try:
                with self._connect(dst_db) as conn:
                    conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
            except psycopg.Error as exc:
                raise classify_database_error(exc, f"clearing the copy of tenant {target.slug}") from exc
            self._run_tool("pg_restore", dst_db, ["--single-transaction", "--exit-on-error", archive],
                           f"the copy of tenant {source.slug}")
        try:
            with self._connect(dst_db) as conn:
                self._ensure_schema(conn, schema, role)
        except psycopg.Error as exc:
            raise classify_database_error(exc, f"securing the copy of tenant {target.slug}") from exc
        tables = self.verify_copy(source, target)
        logger.info("tenant %s copied to %s: %s tables verified", source.slug, dst_db, len(tables))
        return {"tables": tables, "database": dst_db, "schema": schema}

    def verify_copy(self, source: TenantSpec, target: TenantSpec) -> dict:
        """The same tables with the same row counts and checksums on both sides, else a permanent error naming the table."""
        expected, copied = self.table_fingerprints(source), self.table_fingerprints(target)
        schema = self.names(source)["schema"]
        hint = ("the tenant's data changed during the copy, or the copy was altered; "
                "run the migration again (it replaces the copy)")
        for table in sorted(set(expected) | set(copied)):
            if table not in copied:
                raise PermanentInfraError(f"table {schema}.{table} is missing from the copy", hint=hint)
            if table not in expected:
                raise PermanentInfraError(f"table {schema}.{table} of the copy is not in the source", hint=hint)
            if expected[table] != copied[table]:
                raise PermanentInfraError(
                    f"the copy of table {schema}.{table} does not match: source {expected[table]['rows']} rows "
                    f"(checksum {expected[table]['checksum']}), copy {copied[table]['rows']} rows "
                    f"(checksum {copied[table]['checksum']})", hint=hint)
        return expected

    def drop_dedicated_copy(self, target: TenantSpec) -> None:
        """Undo copy_to_dedicated: the dedicated database's schema emptied, as ensure_tenant_database left it."""
        names = self.names(target)
        database = names["database"]
        if not database or not self._exists(None, database):
            return
        try:
            with self._connect(database) as conn:
                conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(names["schema"])))
                if self._role_exists(conn, names["role"]):
                    self._ensure_schema(conn, names["schema"], names["role"])
        except psycopg.Error as exc:
            raise classify_database_error(exc, f"dropping the copy of tenant {target.slug}") from exc
        logger.info("tenant %s copy in %s dropped", target.slug, database)

    def drop_shared_schema(self, source: TenantSpec) -> None:
        """After the cut-over: the schema left in the shared database, its sessions and CONNECT; not the role."""
        names = self.names(source)
        role, schema = names["role"], names["schema"]
        try:
            with self._connect() as conn:
                self._end_sessions(conn, role, self.database)
                conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
                if self._role_exists(conn, role):
                    conn.execute(sql.SQL("REVOKE CONNECT ON DATABASE {} FROM {}").format(
                        sql.Identifier(self.database), sql.Identifier(role)))
        except psycopg.Error as exc:
            raise classify_database_error(exc, f"dropping the shared schema of tenant {source.slug}") from exc
        logger.info("tenant %s shared schema %s dropped", source.slug, schema)

    def leftovers(self, spec: TenantSpec) -> list[dict]:
        """The tenant's role, schema in the shared database and own database, whichever still exist (either tier)."""
        name = tenant_identifier(spec.slug)
        found = []
        try:
            with self._connect() as conn:
                if self._role_exists(conn, name):
                    found.append(inventory.resource("DatabaseRole", name, self.server))
                if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                    found.append(inventory.resource("Database", name, self.server))
                if conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (name,)).fetchone():
                    found.append(inventory.resource("DatabaseSchema", name, f"{self.server}/{self.database}"))
        except psycopg.Error as exc:
            raise classify_database_error(exc, f"scanning the database of tenant {spec.slug}") from exc
        return found

    # --- steps ----------------------------------------------------------------------------------

    @contextmanager
    def _connect(self, database: str | None = None, *, missing_ok: bool = False):
        kwargs = {"autocommit": True, "connect_timeout": self.connect_timeout}
        if database:
            kwargs["dbname"] = database
        try:
            conn = psycopg.connect(self.url, **kwargs)
        except psycopg.OperationalError as exc:
            if missing_ok and "does not exist" in str(exc):
                yield None
                return
            raise classify_database_error(exc, "connecting to the data-plane PostgreSQL") from exc
        except psycopg.Error as exc:
            raise classify_database_error(exc, "connecting to the data-plane PostgreSQL") from exc
        try:
            conn.execute(sql.SQL("SET lock_timeout = {}").format(sql.Literal(self.lock_timeout_ms)))
            yield conn
        finally:
            conn.close()

    def _exists(self, schema: str | None, database: str) -> bool:
        """Does `database` exist (and, given a schema, hold it)?"""
        try:
            with self._connect(database if database != self.database else None, missing_ok=True) as conn:
                if conn is None:
                    return False
                if schema is None:
                    return True
                return conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone() is not None
        except psycopg.Error as exc:
            raise classify_database_error(exc, f"reading {database}") from exc

    def _server_major(self) -> int:
        try:
            with self._connect() as conn:
                return int(conn.execute("SELECT current_setting('server_version_num')").fetchone()[0]) // 10000
        except psycopg.Error as exc:
            raise classify_database_error(exc, "reading the server's version") from exc

    def _run_tool(self, tool: str, database: str, args: list[str], what: str) -> None:
        """pg_dump or pg_restore on `database`; the password goes in the environment, never on the command line."""
        binary = os.path.join(find_pg_bin(self._server_major(), self.pg_dump), tool)
        params = conninfo_to_dict(self.url)
        password = params.pop("password", None)
        params["dbname"] = database
        env = {**os.environ, "PGCONNECT_TIMEOUT": str(self.connect_timeout)}
        if password:
            env["PGPASSWORD"] = password
        target = "--dbname=" + make_conninfo(**params)
        try:
            done = subprocess.run([binary, "--no-password", target, *args], capture_output=True, text=True,
                                  env=env, timeout=self.tool_timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise TransientInfraError(f"{tool} timed out after {self.tool_timeout}s during {what}",
                                      hint="the tenant's data is large or the server slow; retry later") from exc
        if done.returncode != 0:
            raise classify_tool_failure(tool, what, done.stderr + "\n" + done.stdout)

    @staticmethod
    def _end_sessions(conn, role: str, database: str | None) -> None:
        """End the role's sessions (on one database, or everywhere), so DROP does not wait on them."""
        query = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s AND pid <> pg_backend_pid()"
        params: tuple = (role,)
        if database:
            query += " AND datname = %s"
            params = (role, database)
        conn.execute(query, params)

    @staticmethod
    def _role_still_needed(conn, role: str, schema: str) -> bool:
        """The other half of an upgraded tenant still there: its schema in this (shared) database, or its own database."""
        if conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone():
            return True
        return conn.execute("SELECT 1 FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba "
                            "WHERE r.rolname = %s", (role,)).fetchone() is not None

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
