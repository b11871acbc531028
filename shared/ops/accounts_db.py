"""The database side of accounts (issue 14, ADR 011): create an account's schema, adopt a single-account install,
give an account's analysts a login.

    python -m shared.ops.accounts_db list
    python -m shared.ops.accounts_db create lojas-stilli            # schema bling_lojas_stilli + its reader role
    python -m shared.ops.accounts_db adopt lojas-stilli             # move public's tables into that account
    python -m shared.ops.accounts_db grant-reader lojas-stilli --password-stdin < password-file

With the same DB_* / CLOUD_SQL_INSTANCE settings as `python -m shared.migrate`, as the ETL user. Every command is
idempotent. A password is read from stdin (or typed without echo on a terminal): never an argument (argv is
visible to every process on the machine and lands in shell history), never printed, never logged.
"""
from __future__ import annotations

import argparse
import base64
import dataclasses
import getpass
import hashlib
import hmac
import os
import sys
from collections.abc import Sequence
from typing import TextIO

import pg8000.dbapi

from shared import log, migrate
from shared.accounts import READER_ROLE_PREFIX, parse_account_id, reader_role_for, schema_for
from shared.config import read_settings
from shared.db import Database

# The role migration 004 creates for a single-account install; after `adopt` it reads the first account.
LEGACY_READER_ROLE = "bling_bi"
MIN_PASSWORD_LENGTH = 16
_ITERATIONS = 4096  # PostgreSQL's default scram_iterations


# --- logins -----------------------------------------------------------------------------------------------------

def scram_sha256_verifier(password: str, salt: bytes | None = None, iterations: int = _ITERATIONS) -> str:
    """PostgreSQL's stored form of a SCRAM-SHA-256 password (RFC 5802/7677; src/common/scram-common.c)."""
    salt = salt if salt is not None else os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    return f"SCRAM-SHA-256${iterations}:{_b64(salt)}${_b64(stored_key)}:{_b64(server_key)}"


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def set_login_password(database: Database, role: str, password: str) -> None:
    """Give a read-only role (bling_bi or an account's bling_bi_<slug>) LOGIN and this password; idempotent,
    so rotating is running it again.

    The password never reaches the server in clear, nor any log: the client computes the SCRAM-SHA-256 verifier
    (what PostgreSQL stores), passes it as a bind parameter into a transaction-local setting, and a DO block
    quotes it into ALTER ROLE with format(%L) (utility statements take no bind parameters; log_statement=ddl logs
    the DO text, which holds no secret)."""
    if role != LEGACY_READER_ROLE and not role.startswith(READER_ROLE_PREFIX):
        raise ValueError(f"{role} is not a read-only role: only {LEGACY_READER_ROLE} and {READER_ROLE_PREFIX}<slug>")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise SystemExit(f"the password must be at least {MIN_PASSWORD_LENGTH} characters "
                         "(docs/RUNBOOK.md shows how to generate one)")
    log.register_secret(password)
    with database.transaction() as cur:
        if not migrate.role_exists(cur, role):
            raise SystemExit(f"role {role} does not exist: run python -m shared.migrate (or accounts_db create) first,"
                             " as a user that may create roles")
        cur.execute("SELECT set_config('bling.login_role', %s, true), set_config('bling.bi_verifier', %s, true)",
                    (role, scram_sha256_verifier(password)))
        cur.execute("""DO $$ BEGIN
                         EXECUTE format('ALTER ROLE %I WITH LOGIN PASSWORD %L',
                                        current_setting('bling.login_role'), current_setting('bling.bi_verifier'));
                       END $$""")


def read_password(stream: TextIO) -> str:
    """The password from a pipe (one trailing newline dropped) or typed on a terminal without echo."""
    if stream.isatty():
        return getpass.getpass("password (not echoed): ")
    value = stream.read()
    return value[:-2] if value.endswith("\r\n") else value[:-1] if value.endswith("\n") else value


def grant_reader(database: Database, account: str, password: str) -> str:
    """LOGIN + password for `account`'s reader role (created by create/adopt/migrate). Returns the role name."""
    role = reader_role_for(account)
    set_login_password(database, role, password)
    return role


# --- adopting a single-account install --------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Adoption:
    account: str
    schema: str
    moved: tuple[str, ...]  # relations now in the account's schema; empty when it had been adopted before
    reader_role: bool  # whether the account's reader role exists (False: this user may not create roles)

    @property
    def already_adopted(self) -> bool:
        return not self.moved


def adopt_public_schema(database: Database, account: str) -> Adoption:
    """Make today's single-account install (its tables in public) the data of `account`, in one transaction.
    Idempotent: once adopted, a second run moves nothing. Refuses when public holds no install and the account
    has none either, or when the account's schema already holds tables (two installs are never merged)."""
    account = parse_account_id(account)
    schema = schema_for(account)
    with database.transaction() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", migrate.LOCK_KEY)  # no migration runs meanwhile
        # A dashboard's long query holds a lock ALTER must wait for: fail in 10 s rather than queue every writer.
        cur.execute("SELECT set_config('lock_timeout', '10s', true)")
        cur.execute("SELECT to_regclass('public.schema_migrations') IS NOT NULL")
        public_install = cur.fetchone()[0]
        present = _relations_in(cur, schema)
        if not public_install:
            if "schema_migrations" in present:
                return Adoption(account, schema, (), migrate.role_exists(cur, reader_role_for(account)))
            raise SystemExit("public holds no single-account install (no public.schema_migrations): nothing to "
                             f"adopt; a new account's schema is made by `accounts_db create {account}`")
        if present:
            raise SystemExit(f"schema {schema} already holds {len(present)} relations ({', '.join(present[:5])}"
                             f"{', ...' if len(present) > 5 else ''}): refusing to merge public into it")
        _move_public_into(cur, schema)
        moved = tuple(_relations_in(cur, schema))
        reader = migrate.ensure_reader_role(cur, account)
        _map_legacy_reader(cur)
    return Adoption(account, schema, moved, reader)


def _relations_in(cur: pg8000.dbapi.Cursor, schema: str) -> list[str]:
    cur.execute("""SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                   WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v', 'm', 'S') ORDER BY c.relname""", (schema,))
    return [r[0] for r in cur.fetchall()]


def _move_public_into(cur: pg8000.dbapi.Cursor, schema: str) -> None:
    """Every relation of public into `schema`. ALTER ... SET SCHEMA keeps the data (no copy), indexes,
    constraints, grants and ownership; views and foreign keys point at tables by OID, so they follow. Tables
    first: their indexes and the sequences their columns own move with them; then what is left (views, sequences
    of no column). Extension members stay where their extension put them."""
    cur.execute("SELECT set_config('bling.schema', %s, true)", (schema,))
    cur.execute(r"""DO $$
      DECLARE
        target text := current_setting('bling.schema');
        rel record;
      BEGIN
        EXECUTE format('CREATE SCHEMA IF NOT EXISTS %I', target);
        FOR rel IN SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                   WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
                     AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                                     AND d.objid = c.oid AND d.deptype = 'e')
                   ORDER BY c.relname LOOP
          EXECUTE format('ALTER TABLE public.%I SET SCHEMA %I', rel.relname, target);
        END LOOP;
        FOR rel IN SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                   WHERE n.nspname = 'public' AND c.relkind IN ('v', 'm', 'S')
                     AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                                     AND d.objid = c.oid AND d.deptype = 'e')
                   ORDER BY c.relname LOOP
          EXECUTE format('ALTER %s public.%I SET SCHEMA %I',
                         CASE rel.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'SEQUENCE' END,
                         rel.relname, target);
        END LOOP;
      END
      $$""")


def _map_legacy_reader(cur: pg8000.dbapi.Cursor) -> None:
    """The legacy bling_bi (migration 004), when it exists, becomes a member of the adopted account's reader role
    (bling.reader, set by ensure_reader_role), with that schema as its search_path in this database: existing
    dashboards (unqualified names) keep working and read that account only. Its direct grants, which came along
    with the moved tables, are dropped: the reader role is the one source of what it may read."""
    cur.execute(r"""DO $$
      DECLARE
        target text := current_setting('bling.schema');
        reader text := current_setting('bling.reader');
      BEGIN
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bling_bi')
           OR NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = reader) THEN
          RETURN;
        END IF;
        EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA %I FROM bling_bi', target);
        ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE SELECT ON TABLES FROM bling_bi;
        EXECUTE format('GRANT %I TO bling_bi', reader);
        EXECUTE format('ALTER ROLE bling_bi IN DATABASE %I SET search_path = %I', current_database(), target);
      END
      $$""")


# --- command line -----------------------------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m shared.ops.accounts_db", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="every account schema and whether public still holds an install")
    for name, text in (("create", "create or repair an account's schema, migrations and reader role"),
                       ("adopt", "move public's single-account tables into this account's schema"),
                       ("grant-reader", "give the account's reader role LOGIN and a password read from stdin")):
        command = commands.add_parser(name, help=text)
        command.add_argument("account", type=_account_arg)
        if name == "grant-reader":
            command.add_argument("--password-stdin", action="store_true", required=True,
                                 help="read the password from stdin (required: never an argument)")
    return parser


def _account_arg(value: str) -> str:
    try:
        return parse_account_id(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def main(argv: Sequence[str] | None = None, stdin: TextIO | None = None) -> int:
    args = _parser().parse_args(argv)
    database = Database(read_settings())  # the composition root of this command
    try:
        _run(args, database, stdin or sys.stdin)
    finally:
        database.close()
    return 0


def _run(args: argparse.Namespace, database: Database, stdin: TextIO) -> None:
    if args.command == "list":
        for schema in migrate.account_schemas(database):
            print(schema)
        if migrate.public_holds_install(database):
            print("public (single-account install, not adopted)")
        return
    account: str = args.account
    with log.bind(function="accounts_db", account=account):
        if args.command == "create":
            applied = migrate.ensure_account_schema(database, account)
            log.info("account schema ready", schema=schema_for(account), applied_now=applied)
        elif args.command == "adopt":
            adoption = adopt_public_schema(database, account)
            if adoption.already_adopted:
                log.info("already adopted: nothing to do", schema=adoption.schema)
            else:
                log.info("public install adopted", schema=adoption.schema, moved=list(adoption.moved),
                         moved_count=len(adoption.moved), reader_role=adoption.reader_role)
        else:
            role = grant_reader(database, account, read_password(stdin))
            log.info("reader role can log in", role=role)

if __name__ == "__main__":
    sys.exit(main())
