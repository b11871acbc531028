"""What the operator sees of every account (issue 14): the auth function's /status and `python -m shared.ops.accounts
list` show the same entries. Never a token or a secret: the token store's status() decrypts nothing.

One entry per registered account (sorted by slug), with these keys (a stable contract, docs/RUNBOOK.md):

  account                 the slug
  status                  pending | active | paused | removed (shared.account_registry)
  status_reason           the operator's --reason of a pause or removal, else ""
  authorized              a working authorization: a pair is stored, no re-authorization needed, not broken
  token_stored, expires_at, expires_in_s, reauth_required, authorization_broken, last_refresh_at, authorized_at,
  version, refresh_in_progress, last_error, last_error_at, token_backoff_until
                          the account's token document, as TokenStore.status() says (docs/decisions/003, 008)
  authorization_broken_reason   what to fix when authorization_broken (else null)
  reauthorize_url         the start page for this account, when it must be (re-)authorized
  created_at, last_daily_run_ok_at   from the registry (ISO 8601, or null)
  parked                  parked messages of this account (shared.parking)
"""
from __future__ import annotations

import collections
import datetime
import urllib.parse
from typing import Any

from shared import topology
from shared.account_registry import AccountRecord
from shared.deps import Deps


def parked_counts(deps: Deps) -> collections.Counter[str]:
    """Parked messages per account ("" = one that names no account: parked before messages named their account,
    or while no account was connected)."""
    counts: collections.Counter[str] = collections.Counter()
    for snapshot in deps.collection(topology.PARKED).select(["account", "attributes"]).stream():
        counts[message_account(snapshot.to_dict() or {})] += 1
    return counts


def message_account(doc: dict[str, Any]) -> str:
    """The account a parked or dead-lettered message names: its `account` field, else its Pub/Sub attribute."""
    return str(doc.get("account") or (doc.get("attributes") or {}).get("account") or "")


def entries(deps: Deps) -> tuple[list[dict[str, Any]], int]:
    """Every account's entry, and the parked messages that name no account when they cannot be attributed (with
    one account, legacy parked messages are that account's: today's single-account messages)."""
    records = deps.accounts.all(fresh=True)
    parked = parked_counts(deps)
    unnamed = parked.pop("", 0)
    if len(records) <= 1:
        only = next(iter(records), "")
        parked[only] += unnamed
        unnamed = 0
    if not records:
        return [], parked[""]
    return [entry(deps, account, records[account], parked[account]) for account in sorted(records)], unnamed


def entry(deps: Deps, account: str, record: AccountRecord, parked: int) -> dict[str, Any]:
    """One registered account's entry."""
    token = dict(deps.account(account).token_store.status())
    broken_reason = token.pop("action_required", None)
    token.pop("reauthorize_url", None)
    result: dict[str, Any] = {
        "account": account,
        "status": str(record.status),
        "status_reason": record.status_reason,
        "authorized": bool(token["token_stored"] and not token["reauth_required"]
                           and not token["authorization_broken"]),
        **token,
        "authorization_broken_reason": broken_reason,
        "created_at": _iso(record.created_at),
        "last_daily_run_ok_at": _iso(record.last_daily_run_ok_at),
        "parked": parked,
    }
    if token["reauth_required"] or token["authorization_broken"]:
        result["reauthorize_url"] = start_url(deps, account)
    return result


def start_url(deps: Deps, account: str) -> str:
    """The auth function's start page for this account (the operator opens it; "": the page without one)."""
    base = deps.settings.auth_public_url.rstrip("/") + "/start"
    return base + ("?" + urllib.parse.urlencode({"account": account}) if account else "")


def _iso(value: Any) -> str | None:
    return value.astimezone(datetime.UTC).isoformat() if isinstance(value, datetime.datetime) else None
