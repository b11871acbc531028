"""What the two-account end-to-end and chaos tests share (issue 14): the two sandbox companies, each account's
entry in /status, the sandbox's per-account request log checked for a token sent on another account's behalf,
parked work by account, the registry, the stored tokens (for the no-secret checks), and SQL on one schema.

The contract these helpers read (the plumbing must meet it; see the module docstrings of the tests):
  /status            {"accounts": {<slug>: {"status", "token_stored", "expires_at", "reauth_required",
                      "last_daily_run_ok_at", "parked"}}} (a list of such objects, each with "account", is read too)
  parked documents   carry the field `account`
  log lines          carry the field `account` while a message of that account is handled
  token documents    `<prefix>_oauth/<slug>`
"""
from __future__ import annotations

import inspect
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from local import verify
from local.stack import LocalStack
from local.stack.sandbox import AccountSpec
from shared import firestore_client, topology
from shared.accounts import schema_for
from tests.log_checks import json_lines

ACCOUNT_A, ACCOUNT_B = "loja-a", "loja-b"
ACCOUNTS = (ACCOUNT_A, ACCOUNT_B)
# Two small companies; the sandbox gives the second its own id range (dataset.ACCOUNT_ID_STRIDE), as on Bling,
# where ids are global: so "no row of A in B" is a check by id.
SANDBOX_ACCOUNTS = [AccountSpec(ACCOUNT_A, "small", seed=1), AccountSpec(ACCOUNT_B, "small", seed=2)]
SCHEMAS = {account: schema_for(account) for account in ACCOUNTS}
# The API paths that name one record: (kind in the truth, id).
_ID_PATH = re.compile(r"^/(nfe|contatos|produtos|formas-pagamentos)/(\d+)/?$")
_TRUTH_KEY = {"nfe": "nfe", "contatos": "contacts", "produtos": "products", "formas-pagamentos": "payment_forms"}


def prefix(stack: LocalStack) -> str:
    return stack.function_process_env().get("FIRESTORE_PREFIX", "bling")


def collection(stack: LocalStack, registered: topology.Collection) -> Any:
    return firestore_client.collection_in(stack.firestore.client(), prefix(stack), registered)


def truths(stack: LocalStack, accounts: Iterable[str] = ACCOUNTS) -> dict[str, dict[str, Any]]:
    return {account: verify.fetch_truth(stack.sandbox.url, account=account) for account in accounts}


def by_schema(truth_of: Mapping[str, dict[str, Any]]) -> dict[str | None, dict[str, Any]]:
    """{account: truth} as verify.wait_for_accounts wants it: {schema: truth}."""
    return {SCHEMAS[account]: truth for account, truth in truth_of.items()}


def account_status(status: dict[str, Any], account: str) -> dict[str, Any]:
    """The account's entry of the auth function's /status."""
    entries = status.get("accounts")
    if isinstance(entries, list):
        entries = {entry.get("account"): entry for entry in entries if isinstance(entry, dict)}
    if not isinstance(entries, dict) or account not in entries:
        raise AssertionError(f"/status does not list account {account!r} under 'accounts': {json.dumps(status)}")
    entry: dict[str, Any] = entries[account]
    return entry


def owner_of(truth_of: Mapping[str, dict[str, Any]], kind: str, record_id: int) -> str | None:
    """The account whose truth holds that record (None: no account's)."""
    return next((account for account, truth in truth_of.items() if record_id in truth[kind]), None)


def token_problems(stack: LocalStack, truth_of: Mapping[str, dict[str, Any]],
                   allowed_statuses: Iterable[int] = ()) -> list[str]:
    """Every API request the sandbox recorded, checked against whose token it carried: a request for a record of
    another account, an answer the sandbox gives a token of the wrong company (401 for one it does not know, 404
    for a record that company does not have), or a request whose token named no account. Empty when each account
    only ever sent its own token for its own records."""
    problems = []
    allowed = set(allowed_statuses)
    for account in truth_of:
        for request in stack.sandbox.admin("requests", account=account):
            where = f"{account}: {request['method']} {request['path']} -> {request['status']}"
            if request["status"] in (401, 404) and request["status"] not in allowed:
                problems.append(where)
            match = _ID_PATH.match(request["path"])
            if match:
                owner = owner_of(truth_of, _TRUTH_KEY[match.group(1)], int(match.group(2)))
                if owner not in (None, account):
                    problems.append(f"{where}: a record of {owner} asked for with the token of {account}")
    unnamed = [r for r in stack.sandbox.admin("requests") if r.get("account") is None]
    problems += [f"no account's token: {r['method']} {r['path']} -> {r['status']}" for r in unnamed]
    return problems


def parked(stack: LocalStack) -> list[dict[str, Any]]:
    return [snap.to_dict() for snap in collection(stack, topology.PARKED).stream()]


def parked_accounts(stack: LocalStack) -> list[str | None]:
    return sorted((p.get("account") for p in parked(stack)), key=str)


def registry(stack: LocalStack) -> Any:
    from shared.account_registry import AccountRegistry

    client = stack.firestore.client()
    return AccountRegistry(client, firestore_client.collection_in(client, prefix(stack), topology.ACCOUNTS),
                           cache_s=0)


def paused_account(stack: LocalStack, account: str) -> None:
    """An account the deployment knows but must not run: registered, then paused by the operator."""
    from shared.account_registry import AccountStatus

    accounts = registry(stack)
    accounts.register(account)
    accounts.set_status(account, AccountStatus.PAUSED, "paused by the test")


def stored_tokens(stack: LocalStack) -> set[str]:
    """The plain access and refresh tokens of every token document (for the no-secret-in-logs checks)."""
    from shared.bling import token_store

    found: set[str] = set()
    # One document per account (doc id = slug). Today's decrypted_tokens knows one document only; the plumbing
    # binds the ciphertext to its document, so it takes the account too once it exists.
    takes_account = len(inspect.signature(token_store.decrypted_tokens).parameters) > 3
    for snap in collection(stack, topology.OAUTH).stream():
        data = snap.to_dict() or {}
        args = (data, stack.token_key, prefix(stack), *((snap.id,) if takes_account else ()))
        found |= {value for value in token_store.decrypted_tokens(*args).values() if value}
    return found


def execute_in(stack: LocalStack, schema: str, statement: str, params: tuple[Any, ...] = ()) -> int:
    """One statement on the tables of `schema` (search_path set for its transaction), committed; the row count."""
    conn = stack.postgres.connect()
    try:
        cur = conn.cursor()
        cur.execute("SELECT set_config('search_path', %s, true)", (verify.checked_schema(schema),))
        cur.execute(statement, params)
        count = int(cur.rowcount)
        conn.commit()
        return count
    finally:
        conn.close()


def forget_month(stack: LocalStack, account: str, month: str) -> int:
    """Delete the account's NF-e of `month` (their items and parcelas go with them), so a run of that month must
    fetch their details again: real work for a scenario, without reloading the contacts and products."""
    return execute_in(stack, SCHEMAS[account], "DELETE FROM nfe WHERE data_emissao_raw LIKE %s", (month + "-%",))


def throughput(stats: dict[str, Any]) -> float:
    """Requests per second between an account's first and last request."""
    span = (stats["last_request_at"] or 0) - (stats["first_request_at"] or 0)
    return stats["requests_total"] / span if span > 0 else 0.0


class LogMark:
    """The functions' JSON log lines written after this mark."""

    def __init__(self, stack: LocalStack):
        self.stack = stack
        self.sizes = {name: _size(path) for name, path in stack.log_paths().items()}

    def lines(self, functions: Iterable[str] | None = None) -> list[dict[str, Any]]:
        wanted = set(functions) if functions is not None else None
        out = []
        for name, path in self.stack.log_paths().items():
            if wanted is not None and name not in wanted:
                continue
            with open(path, "rb") as handle:
                handle.seek(self.sizes.get(name, 0))
                out += json_lines(name, handle.read().decode("utf-8", errors="replace"))
        return out

    def errors(self) -> list[dict[str, Any]]:
        return [e for e in self.lines() if e.get("severity") in ("ERROR", "CRITICAL")]


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
