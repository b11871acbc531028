"""Apply the numbered SQL files in migrations/ to every schema that holds the pipeline's tables.

One small runner for the demo, the tests and deployment (Cloud Build runs `python -m shared.migrate`). Each file
runs in its own transaction together with its row in schema_migrations, so a failed migration leaves nothing
half-applied; an advisory lock keeps two runners from applying the same file at once; a file whose checksum
changed after it was applied is refused (migrations are append-only).

Since issue 14 every account has its tables in its own schema (shared.accounts.schema_for, ADR 011). A migration
file runs with search_path set to that one schema, so its unqualified names create and alter that account's
tables; `schema_migrations` lives in each schema too. `public` holds the tables of a single-account install that
has not been adopted yet (shared.ops.accounts_db adopt): it is migrated while it holds them, or while the database
has no account schema at all (a new database: today's commands and the local stack keep working).
"""
from __future__ import annotations

import hashlib
import pathlib
import re
import sys

import pg8000.dbapi

from shared import log
from shared.accounts import account_for_schema, reader_role_for, schema_for
from shared.config import read_settings
from shared.db import Database

MIGRATIONS_DIR = pathlib.Path(__file__).resolve().parent.parent / "migrations"
_FILE_PATTERN = re.compile(r"^(\d{3,})_[a-z0-9_]+\.sql$")
# The advisory lock of this runner, in the two-integer key space (invoice upserts lock single bigint keys: the
# two key spaces never overlap).
LOCK_KEY = (727, 1)
# Files that name schema public and so belong to the single-account layout only; an account schema skips them
# (and records nothing: they were never applied there). 004 creates the legacy bling_bi role and grants it SELECT
# on public; an account schema gets its own reader role from ensure_reader_role instead. Every other file uses
# unqualified names only (tests/unit/test_schema_agnostic_sql.py checks it).
PUBLIC_ONLY = frozenset({"004_bi_read_role.sql"})


def migration_files(directory: pathlib.Path = MIGRATIONS_DIR) -> list[pathlib.Path]:
    files = sorted(p for p in directory.iterdir() if _FILE_PATTERN.match(p.name))
    versions = [m.group(1) for p in files if (m := _FILE_PATTERN.match(p.name))]
    if len(set(versions)) != len(versions):
        raise SystemExit(f"two migrations share a number in {directory}")
    return files


def apply_all(database: Database, schema: str | None = None, directory: pathlib.Path = MIGRATIONS_DIR) -> list[str]:
    """Apply the files `schema` has not applied yet (None: the connection's default, public); their names."""
    applied_now: list[str] = []
    with database.transaction(schema) as cur:
        if schema is not None:
            cur.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,))
            if cur.fetchone() is None:  # search_path would name nothing: CREATE TABLE would fail less clearly
                raise SystemExit(f"schema {schema} does not exist: create it with ensure_account_schema")
        cur.execute("""CREATE TABLE IF NOT EXISTS schema_migrations (
                         filename text PRIMARY KEY, checksum text NOT NULL,
                         applied_at timestamptz NOT NULL DEFAULT now())""")
    for path in migration_files(directory):
        sql = path.read_text(encoding="utf-8")
        checksum = hashlib.sha256(sql.encode()).hexdigest()
        with database.transaction(schema) as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", LOCK_KEY)
            cur.execute("SELECT checksum FROM schema_migrations WHERE filename = %s", (path.name,))
            row = cur.fetchone()
            if row:
                if row[0] != checksum:
                    raise SystemExit(f"{path.name} changed after it was applied; add a new migration instead")
                continue
            if schema is not None and schema != "public" and path.name in PUBLIC_ONLY:
                continue
            # Simple-query protocol: a migration file holds many statements (the extended protocol takes one).
            # It runs in this transaction, so the transaction-local search_path applies to it.
            cur.connection.execute_simple(sql)
            cur.execute("INSERT INTO schema_migrations (filename, checksum) VALUES (%s, %s)", (path.name, checksum))
            applied_now.append(path.name)
            log.info("migration applied", migration=path.name, schema=schema or "public")
    return applied_now


def account_schemas(database: Database) -> list[str]:
    """Every account schema in this database: `bling_<slug>` schemas holding schema_migrations, by name."""
    rows = database.fetch_all(r"""SELECT n.nspname FROM pg_namespace n JOIN pg_class c ON c.relnamespace = n.oid
                            WHERE c.relname = 'schema_migrations' AND c.relkind = 'r'
                              AND n.nspname LIKE 'bling\_%' ORDER BY n.nspname""")
    schemas = []
    for (name,) in rows:
        try:
            account_for_schema(name)
        except ValueError:  # someone's own schema that happens to start with bling_: not ours to migrate
            log.warning("schema skipped: its name maps to no account id", schema=name)
            continue
        schemas.append(name)
    return schemas


def public_holds_install(database: Database) -> bool:
    """Whether public still holds a single-account install (its schema_migrations) that nobody adopted."""
    return bool(database.fetch_all("SELECT to_regclass('public.schema_migrations') IS NOT NULL")[0][0])


def ensure_reader_role(cur: pg8000.dbapi.Cursor, account: str) -> bool:
    """Create or repair `account`'s reader role inside the caller's transaction; False when it does not exist
    (this user may not create roles: the local stack's plain owner leaves it missing, the caller says so).

    Read-only transactions and a 5-minute statement limit as bling_bi (migration 004); search_path is the
    account's schema in this database, so an analyst's unqualified `nfe` is theirs. USAGE + SELECT on its schema,
    default privileges for the tables and views later migrations create (they run as this same user), and
    whatever it holds in any other schema (public, another account's) revoked, so re-running repairs a grant
    made by hand. The names travel as transaction-local settings (utility statements take no bind parameters; format(%I)
    quotes them)."""
    reader = reader_role_for(account)
    cur.execute("SELECT set_config('bling.schema', %s, true), set_config('bling.reader', %s, true)",
                (schema_for(account), reader))
    cur.execute(r"""DO $$
      DECLARE
        target text := current_setting('bling.schema');
        reader text := current_setting('bling.reader');
        other text;
      BEGIN
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = reader) THEN
          IF NOT (SELECT rolcreaterole OR rolsuper FROM pg_roles WHERE rolname = current_user) THEN
            RETURN;
          END IF;
          EXECUTE format('CREATE ROLE %I NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS '
                         'CONNECTION LIMIT 3', reader);
          EXECUTE format('ALTER ROLE %I SET default_transaction_read_only = on', reader);
          EXECUTE format('ALTER ROLE %I SET statement_timeout = %L', reader, '5min');
        END IF;
        EXECUTE format('ALTER ROLE %I IN DATABASE %I SET search_path = %I', reader, current_database(), target);
        EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), reader);
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', target, reader);
        EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA %I TO %I', target, reader);
        EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT SELECT ON TABLES TO %I', target, reader);
        -- Only the schemas where it holds something (a direct grant on the schema, a relation, or a default
        -- privilege), so a migration over N accounts stays N small scans instead of N x N revokes.
        FOR other IN SELECT n.nspname FROM pg_namespace n, pg_roles r
                     WHERE r.rolname = reader AND n.nspname <> target
                       AND (EXISTS (SELECT 1 FROM aclexplode(n.nspacl) a WHERE a.grantee = r.oid)
                            OR EXISTS (SELECT 1 FROM pg_class c, aclexplode(c.relacl) a
                                       WHERE c.relnamespace = n.oid AND a.grantee = r.oid)
                            OR EXISTS (SELECT 1 FROM pg_default_acl d, aclexplode(d.defaclacl) a
                                       WHERE d.defaclnamespace = n.oid AND a.grantee = r.oid)) LOOP
          EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA %I FROM %I', other, reader);
          EXECUTE format('REVOKE ALL ON ALL SEQUENCES IN SCHEMA %I FROM %I', other, reader);
          EXECUTE format('REVOKE ALL ON SCHEMA %I FROM %I', other, reader);
          EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I REVOKE ALL ON TABLES FROM %I', other, reader);
        END LOOP;
      END
      $$""")
    return role_exists(cur, reader)


def role_exists(cur: pg8000.dbapi.Cursor, role: str) -> bool:
    cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
    return cur.fetchone() is not None


def ensure_account_schema(database: Database, account: str, directory: pathlib.Path = MIGRATIONS_DIR) -> list[str]:
    """Create `account`'s schema when missing, apply the migrations it lacks, create or repair its reader role.
    Idempotent (every deployment runs it for every account). Returns the migrations applied now."""
    schema = schema_for(account)
    with database.transaction() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", LOCK_KEY)  # two creators of one schema: one waits
        cur.execute("SELECT set_config('bling.schema', %s, true)", (schema,))
        cur.execute("DO $$ BEGIN EXECUTE format('CREATE SCHEMA IF NOT EXISTS %I', current_setting('bling.schema'));"
                    " END $$")
    applied = apply_all(database, schema, directory)
    with database.transaction() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", LOCK_KEY)
        has_reader = ensure_reader_role(cur, account)
    if not has_reader:
        log.warning("reader role not created: this database user may not create roles", account=account,
                    role=reader_role_for(account))
    return applied


def migrate_all(database: Database, directory: pathlib.Path = MIGRATIONS_DIR) -> dict[str, list[str]]:
    """`python -m shared.migrate`: every account schema, and public while it holds an un-adopted install (or the
    database has no account yet). Schema → migrations applied now."""
    accounts = [account_for_schema(s) for s in account_schemas(database)]
    applied: dict[str, list[str]] = {}
    if public_holds_install(database) or not accounts:
        applied["public"] = apply_all(database, None, directory)
    for account in accounts:
        applied[schema_for(account)] = ensure_account_schema(database, account, directory)
    return applied


def main() -> int:
    database = Database(read_settings())  # the composition root of this command
    try:
        with log.bind(function="migrate"):
            applied = migrate_all(database)
            log.info("migrations up to date", applied_now=applied, schemas=sorted(applied),
                     applied_count=sum(len(files) for files in applied.values()))
    finally:
        database.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
