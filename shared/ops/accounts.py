"""The accounts one deployment serves (issue 14, docs/decisions/011): list, connect, pause, resume, remove, adopt.

    python -m shared.ops.accounts list [--json]           # what the auth function's /status shows, as a table
    python -m shared.ops.accounts connect lojas-stilli     # register it pending + its schema; prints the start URL
    python -m shared.ops.accounts pause lojas-stilli --reason "client asked to stop"
    python -m shared.ops.accounts resume lojas-stilli
    python -m shared.ops.accounts remove lojas-stilli      # stops its work; its data stays (prints the SQL to drop it)
    python -m shared.ops.accounts adopt lojas-stilli       # upgrade: the single-account install becomes this account
    python -m shared.ops.accounts grant-reader lojas-stilli --password-stdin < password-file

With the functions' settings (GOOGLE_CLOUD_PROJECT, FIRESTORE_PREFIX, AUTH_PUBLIC_URL; DB_* / CLOUD_SQL_INSTANCE
for connect, adopt and grant-reader, as the ETL user). Every command is idempotent. Nothing here deletes data:
`remove` prints the statements that would, for the operator to run themselves.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from shared import account_status, log, migrate
from shared.account_registry import AccountStatus
from shared.accounts import reader_role_for, schema_for
from shared.deps import Deps
from shared.ops import account_arg, accounts_db

_COLUMNS = (("account", 22), ("status", 9), ("authorized", 11), ("expires_at", 27), ("reauth", 7), ("broken", 7),
            ("last_daily_run_ok_at", 27), ("parked", 7))


def table(entries: list[dict[str, Any]]) -> str:
    """The entries of shared.account_status as a fixed-width table (plus a line per account needing action)."""
    lines = ["".join(f"{title:<{width}}" for title, width in _COLUMNS)]
    for e in entries:
        values = (e["account"] or "(no account)", e["status"], _yes(e["authorized"]), e["expires_at"] or "-",
                  _yes(e["reauth_required"]), _yes(e["authorization_broken"]), e["last_daily_run_ok_at"] or "-",
                  e["parked"])
        lines.append("".join(f"{v!s:<{width}}" for v, (_, width) in zip(values, _COLUMNS, strict=True)).rstrip())
    for e in entries:
        why = e["authorization_broken_reason"] or e["status_reason"]
        if why or e.get("reauthorize_url"):
            name = e["account"] or "(no account)"
            lines.append(f"  {name}: {why or 're-authorization required'}"
                         + (f" -> {e['reauthorize_url']}" if e.get("reauthorize_url") else ""))
    return "\n".join(lines)


def _yes(value: object) -> str:
    return "yes" if value else "no"


def connect(deps: Deps, account: str) -> str:
    """The account's schema (migrations, reader role), then the registry (pending); returns the start URL."""
    applied = migrate.ensure_account_schema(deps.database, account)
    record = deps.accounts.register(account)
    log.info("account connected: open the start URL to authorize it", account=account, status=str(record.status),
             schema=schema_for(account), applied_now=applied)
    return account_status.start_url(deps, account)


def set_status(deps: Deps, account: str, status: AccountStatus, reason: str = "") -> None:
    try:
        record = deps.accounts.set_status(account, status, reason)
    except ValueError as exc:
        raise SystemExit(str(exc)) from exc
    log.info(f"account {account} is {record.status}", account=account, status=str(record.status),
             status_reason=reason)


def drop_statements(account: str) -> str:
    """What deleting a removed account's data would take, for the operator to run themselves (never run here)."""
    return (f"DROP SCHEMA {schema_for(account)} CASCADE;\n"
            f"DROP ROLE IF EXISTS {reader_role_for(account)};")


def adopt(deps: Deps, account: str) -> None:
    """The upgrade of a single-account install: its tables (public) and its Firestore documents (token, checkpoints,
    daily-limit stop, parked work) become `account`'s, which is registered (active when it has a token). Refused
    when another account exists: adopting is for the first account only. Idempotent."""
    from shared import account_upgrade

    others = sorted(a for a in deps.accounts.all(fresh=True) if a != account)
    if others:
        raise SystemExit(f"refusing to adopt {account}: this deployment already has accounts ({', '.join(others)}); "
                         "adopt upgrades a single-account install into its first account only")
    # First: it refuses (and changes nothing) on a bad database.
    tables = accounts_db.adopt_public_schema(deps.database, account)
    try:
        firestore = account_upgrade.adopt_firestore(deps, account)
    except account_upgrade.AdoptionRefused as exc:
        raise SystemExit(f"the database is adopted; the Firestore half was refused: {exc}") from exc
    done = tables.already_adopted and not firestore.moved_anything
    log.info("already adopted: nothing to do" if done else "single-account install adopted", account=account,
             schema=tables.schema, moved_relations=len(tables.moved), token=firestore.token,
             checkpoints=firestore.checkpoints, parked=firestore.parked, status=firestore.status)
    print(f"account {account}: {firestore.status}; tables in {tables.schema} ({len(tables.moved)} moved now), "
          f"token {firestore.token}, {firestore.checkpoints} checkpoint(s) and {firestore.parked} parked "
          "message(s) moved now")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m shared.ops.accounts", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="every account: status, authorization, last daily run, parked work")
    listing.add_argument("--json", action="store_true", help="the entries as JSON (the /status keys)")
    for name, text in (("connect", "register a new account (pending), create its schema, print its start URL"),
                       ("pause", "stop running the account's work (its messages are dropped with one ERROR)"),
                       ("resume", "run a paused (or removed) account's work again"),
                       ("remove", "stop the account for good; its data stays (prints the SQL that would drop it)"),
                       ("adopt", "upgrade: the single-account install (public tables, token) becomes this account"),
                       ("grant-reader", "give the account's read-only role LOGIN and a password read from stdin")):
        command = commands.add_parser(name, help=text)
        command.add_argument("account", type=account_arg)
        if name in ("pause", "remove"):
            command.add_argument("--reason", default="", help="shown by list and /status")
        if name == "grant-reader":
            command.add_argument("--password-stdin", action="store_true", required=True,
                                 help="read the password from stdin (required: never an argument)")
    return parser


def main(argv: Sequence[str] | None = None, stdin: TextIO | None = None) -> int:
    args = _parser().parse_args(argv)
    deps = Deps.from_environment()  # the composition root of this command
    try:
        return _run(deps, args, stdin)
    finally:
        deps.close()


def _run(deps: Deps, args: argparse.Namespace, stdin: TextIO | None) -> int:
    if args.command == "list":
        listed, unattributed = account_status.entries(deps)
        print(json.dumps(listed, indent=2) if args.json else table(listed))
        if unattributed and not args.json:
            print(f"{unattributed} parked message(s) name no account")
        return 0
    account: str = args.account
    with log.bind(function="accounts", account=account):
        if args.command == "connect":
            url = connect(deps, account)
            print(f"Open this address in the browser that will approve at Bling (as the client's Bling user), "
                  f"and enter the admin key:\n{url}")
        elif args.command == "pause":
            set_status(deps, account, AccountStatus.PAUSED, args.reason)
        elif args.command == "resume":
            set_status(deps, account, AccountStatus.ACTIVE)
        elif args.command == "remove":
            set_status(deps, account, AccountStatus.REMOVED, args.reason)
            print(f"Account {account} removed: no work runs for it; its data and token are kept. To delete its "
                  f"data for good, run yourself (as the ETL user; this command never does):\n"
                  f"{drop_statements(account)}")
        elif args.command == "adopt":
            adopt(deps, account)
        else:
            role = accounts_db.grant_reader(deps.database, account, accounts_db.read_password(stdin or sys.stdin))
            print(f"{role} can log in and reads schema {schema_for(account)} only "
                  f"(psql \"host=127.0.0.1 port=5432 dbname={deps.settings.db_name} user={role}\")")
    return 0


if __name__ == "__main__":
    sys.exit(main())
