"""The Firestore half of upgrading a single-account install in place (issue 14, docs/decisions/011).

Before issue 14 a deployment served one Bling account and keyed nothing by it: its token document was
`<prefix>_oauth/bling`, its listing checkpoints `<prefix>_checkpoints/<run_id>|<window>`, its daily-limit stop
`<prefix>_rate_state/daily_limit`, and its parked messages named no account. `adopt_firestore(deps, account)` makes
all of that the named first account's, so the pipeline resumes where it stopped: no re-authorization, no window
listed again from its first page (and so no invoice loaded again: the detail step skips what is stored).

Run it with the pipeline paused and drained, right after the database half (shared.ops.accounts_db adopt); the
operator command `python -m shared.ops.accounts adopt <slug>` runs both. Idempotent: a second run finds nothing left
to move and says so.

- The token pair moves in one Firestore transaction: the account's document is created from the legacy one (the
  token fields re-encrypted, since their ciphertext is bound to the document's path: shared.bling.token_store), the
  legacy one deleted. Refused when the account's document already holds another pair (never overwrite a working
  authorization), and while the legacy refresh lease is live (the old code's holder would write its new single-use
  refresh token to a document that no longer exists).
- Live checkpoints are copied to the account's keys and the legacy ones deleted; a checkpoint the account already
  has (a run resumed meanwhile) wins.
- Parked messages that name no account get it: the document's `account` field, the message's JSON `account` key
  and its `account` attribute, so their release runs them for this account whatever accounts are active by then.
- The account is registered, and made active when a token pair is stored for it.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
from typing import Any

from shared import listing, log, topology
from shared.account_registry import AccountRecord
from shared.accounts import parse_account_id
from shared.bling import token_store
from shared.bling.client import DAILY_LIMIT_DOC
from shared.deps import Deps
from shared.messages import ACCOUNT_KEY


class AdoptionRefused(Exception):
    """The Firestore state cannot be adopted as it is (what to do is in the message)."""


@dataclasses.dataclass(frozen=True)
class FirestoreAdoption:
    account: str
    token: str  # "moved", "already moved", "none" (the install had no authorization)
    checkpoints: int  # legacy checkpoints moved to the account's keys
    parked: int  # parked messages that now name the account
    daily_limit: bool  # the remembered daily-limit stop moved
    status: str  # the account's status in the registry afterwards

    @property
    def moved_anything(self) -> bool:
        return self.token == "moved" or bool(self.checkpoints or self.parked or self.daily_limit)


def adopt_firestore(deps: Deps, account: str) -> FirestoreAdoption:
    """Make the single-account install's Firestore state `account`'s (see the module docstring)."""
    account = parse_account_id(account)
    with log.bind(function="account_upgrade", account=account):
        token = _move_token(deps, account)
        checkpoints = _move_checkpoints(deps, account)
        daily_limit = _move_daily_limit(deps, account)
        parked = _name_parked(deps, account)
        record = _register(deps, account)
        adoption = FirestoreAdoption(account, token, checkpoints, parked, daily_limit, str(record.status))
        log.info("Firestore state adopted" if adoption.moved_anything else "Firestore already adopted: nothing to do",
                 event="firestore_adopted", token=token, checkpoints=checkpoints, parked=parked,
                 daily_limit=daily_limit, status=adoption.status)
        return adoption


def _move_token(deps: Deps, account: str) -> str:
    from google.cloud import firestore

    if account == token_store.LEGACY_DOC_ID:
        return "already moved"  # the account named like the legacy document: its pair is where it belongs

    oauth = deps.collection(topology.OAUTH)
    legacy_ref, target_ref = oauth.document(token_store.LEGACY_DOC_ID), oauth.document(account)
    settings = deps.settings
    key, prefix = settings.bling_token_key, settings.firestore_prefix

    @firestore.transactional
    def move(transaction: Any) -> str:
        legacy, target = legacy_ref.get(transaction=transaction), target_ref.get(transaction=transaction)
        if not legacy.exists:
            return "already moved" if target.exists else "none"
        data = legacy.to_dict() or {}
        pair = token_store.decrypted_tokens(data, key, prefix, token_store.LEGACY_DOC_ID)
        if target.exists:
            theirs = token_store.decrypted_tokens(target.to_dict() or {}, key, prefix, account)
            if theirs != pair:
                raise AdoptionRefused(
                    f"account {account!r} already has a token document with another authorization; the legacy one "
                    f"(<prefix>_oauth/{token_store.LEGACY_DOC_ID}) is left as it is. Adopt into the account that "
                    "install belonged to, or delete the legacy document if it is no longer wanted.")
            transaction.delete(legacy_ref)  # an earlier run copied it and stopped before deleting
            return "moved"
        if data.get("lease_holder") and _lease_live(data):
            raise AdoptionRefused("a token refresh is in progress on the legacy document: pause the pipeline, wait "
                                  f"for the lease to end ({settings.token_lease_s:.0f} s at most) and run it again")
        moved = {**data, **(token_store.encrypted_tokens(pair, key, prefix, account) if data.get("refresh_token")
                            else {})}
        transaction.create(target_ref, moved)
        transaction.delete(legacy_ref)
        return "moved"

    result: str = move(deps.firestore.transaction())
    return result


def _lease_live(data: dict[str, Any]) -> bool:
    until = data.get("lease_until")
    return isinstance(until, datetime.datetime) and until > datetime.datetime.now(tz=datetime.UTC)


def _move_checkpoints(deps: Deps, account: str) -> int:
    """`<run_id>|<window>` (one separator: a run id and a window key hold none) → the account's key."""
    checkpoints = deps.collection(topology.CHECKPOINTS)
    moved = 0
    for snapshot in checkpoints.stream():
        parts = snapshot.id.split("|")
        if len(parts) != 2:
            continue  # already an account's (<account>|<run_id>|<window>)
        target = checkpoints.document(listing.checkpoint_id(account, *parts))
        if not target.get().exists:
            target.set(snapshot.to_dict() or {})
        snapshot.reference.delete()
        moved += 1
    return moved


def _move_daily_limit(deps: Deps, account: str) -> bool:
    state = deps.collection(topology.RATE_STATE)
    legacy = state.document(DAILY_LIMIT_DOC).get()
    if not legacy.exists:
        return False
    state.document(f"{account}|{DAILY_LIMIT_DOC}").set(legacy.to_dict() or {})
    legacy.reference.delete()
    return True


def _name_parked(deps: Deps, account: str) -> int:
    named = 0
    for snapshot in deps.collection(topology.PARKED).stream():
        doc = snapshot.to_dict() or {}
        if doc.get("account"):
            continue
        update: dict[str, Any] = {"account": account,
                                  "attributes": {**(doc.get("attributes") or {}), ACCOUNT_KEY: account}}
        data = _with_account(doc.get("data") or b"", account)
        if data is not None:
            update["data"] = data
        snapshot.reference.update(update)
        named += 1
    return named


def _with_account(data: bytes, account: str) -> bytes | None:
    """The message's JSON with its account, or None when it is not a JSON object (it is released as it is, and
    its function drops it with one ERROR as before)."""
    try:
        body = json.loads(data)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(body, dict):
        return None
    return json.dumps({**body, ACCOUNT_KEY: body.get(ACCOUNT_KEY) or account}).encode()


def _register(deps: Deps, account: str) -> AccountRecord:
    deps.accounts.register(account)
    if deps.account(account).token_store.status()["token_stored"]:
        return deps.accounts.mark_authorized(account)
    record = deps.accounts.get(account, fresh=True)
    assert record is not None, "registered just now"
    log.warning("the adopted install has no Bling authorization: the account stays pending until one is stored",
                event="firestore_adopted_without_token")
    return record
