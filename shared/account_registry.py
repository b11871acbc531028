"""The accounts one deployment serves: runtime data in Firestore (`<prefix>_accounts/<slug>`), never Terraform.

An account is one Bling company that authorized our app (docs/decisions/011). Its lifecycle:
  pending  - the operator opened the auth start page for it; no token yet
  active   - a token pair is stored; the scheduler fans out to it, its messages run
  paused   - the operator stopped it (documented command); its messages are dropped with one ERROR each
  removed  - like paused, and the scheduler forgets it; its data stays where it is (deleting data is a separate,
             explicit step the operator runs themselves)

Every function resolves the account a message names before doing anything for it (`resolve`). A message that
names no account is today's single-account format: it runs when exactly one account is active. Reads are cached
per process for `cache_s` seconds, so a pause takes effect within that time on every warm instance.
"""
from __future__ import annotations

import dataclasses
import datetime
import enum
import threading
import time
from collections.abc import Callable
from typing import Any

from shared.accounts import parse_account_id
from shared.errors import OperatorActionRequired, PermanentError

_UTC = datetime.UTC


class AccountStatus(enum.StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    PAUSED = "paused"
    REMOVED = "removed"


class AccountNotServed(PermanentError):
    """The message names an account this deployment does not serve now (unknown, pending, paused, removed), or
    names none while several are active: dropped with one ERROR, never run against another account's token."""


class NoAccountConnected(OperatorActionRequired):
    """No account is active yet (a fresh install, or an upgrade whose first account is not adopted yet): the work
    is parked until the operator connects or adopts one, then released."""


@dataclasses.dataclass(frozen=True)
class AccountRecord:
    account: str
    status: AccountStatus
    created_at: datetime.datetime | None = None
    updated_at: datetime.datetime | None = None
    status_reason: str = ""
    last_daily_run_ok_at: datetime.datetime | None = None

    @classmethod
    def from_document(cls, account: str, data: dict[str, Any]) -> AccountRecord:
        try:
            status = AccountStatus(str(data.get("status")))
        except ValueError:
            # A document edited by hand into garbage must not make the account run: treat it as paused.
            status = AccountStatus.PAUSED
        return cls(account=account, status=status, created_at=data.get("created_at"),
                   updated_at=data.get("updated_at"), status_reason=str(data.get("status_reason") or ""),
                   last_daily_run_ok_at=data.get("last_daily_run_ok_at"))


class AccountRegistry:
    """Reads and status changes of `<prefix>_accounts` (`collection`, in the `firestore` client's database)."""

    def __init__(self, firestore: Any, collection: Any, cache_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic):
        self._firestore = firestore
        self._collection = collection
        self._cache_s = cache_s
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: tuple[float, dict[str, AccountRecord]] | None = None

    # ------------------------------------------------------------------------------------------------ reads

    def all(self, fresh: bool = False) -> dict[str, AccountRecord]:
        with self._lock:
            now = self._clock()
            if fresh or self._cached is None or now - self._cached[0] >= self._cache_s:
                records = {snap.id: AccountRecord.from_document(snap.id, snap.to_dict() or {})
                           for snap in self._collection.stream()}
                self._cached = (now, records)
            return dict(self._cached[1])

    def get(self, account: str, fresh: bool = False) -> AccountRecord | None:
        return self.all(fresh).get(account)

    def active(self, fresh: bool = False) -> list[str]:
        return sorted(a for a, r in self.all(fresh).items() if r.status is AccountStatus.ACTIVE)

    def resolve(self, requested: str | None) -> str:
        """The account a message runs for, or why it does not run (AccountNotServed / NoAccountConnected)."""
        if requested is None:
            active = self.active()
            if len(active) == 1:
                return active[0]
            if not active:
                raise NoAccountConnected("the message names no account and no account is active: connect one "
                                         "(auth start page) or adopt the single-account install "
                                         "(python -m shared.ops.accounts adopt <slug>)")
            raise AccountNotServed(f"the message names no account and {len(active)} accounts are active "
                                   f"({', '.join(active)}): it must name one")
        record = self.get(requested)
        if record is None or record.status is not AccountStatus.ACTIVE:
            record = self.get(requested, fresh=True)  # connected or resumed seconds ago on another instance
        if record is None:
            raise AccountNotServed(f"account {requested!r} is not connected to this deployment")
        if record.status is not AccountStatus.ACTIVE:
            reason = f" ({record.status_reason})" if record.status_reason else ""
            raise AccountNotServed(f"account {requested!r} is {record.status}{reason}: its work is not run")
        return requested

    # ------------------------------------------------------------------------------------------------ writes

    def register(self, account: str) -> AccountRecord:
        """Create the account `pending` (the start page for a new slug); an existing one is left as it is, except
        that a removed account becomes pending again (the operator is connecting it anew)."""
        account = parse_account_id(account)
        return self._change(account, lambda current: (
            AccountStatus.PENDING if current in (None, AccountStatus.REMOVED) else current), "")

    def mark_authorized(self, account: str) -> AccountRecord:
        """A token pair was stored: pending becomes active; a paused account stays paused (the operator paused it
        on purpose; re-authorizing does not resume it)."""
        return self._change(account, lambda current: (
            AccountStatus.PAUSED if current is AccountStatus.PAUSED else AccountStatus.ACTIVE), "")

    def set_status(self, account: str, status: AccountStatus, reason: str = "") -> AccountRecord:
        """pause / resume / remove by the operator; resuming an account that was never authorized is refused."""
        account = parse_account_id(account)

        def decide(current: AccountStatus | None) -> AccountStatus:
            if current is None:
                raise ValueError(f"account {account!r} is not connected to this deployment")
            if status is AccountStatus.ACTIVE and current is AccountStatus.PENDING:
                raise ValueError(f"account {account!r} was never authorized: open the auth start page for it")
            return status
        return self._change(account, decide, reason)

    def record_daily_run_ok(self, account: str, at: datetime.datetime) -> None:
        self._collection.document(account).set({"last_daily_run_ok_at": at}, merge=True)
        self._forget()

    def _change(self, account: str, decide: Callable[[AccountStatus | None], AccountStatus],
                reason: str) -> AccountRecord:
        from google.cloud import firestore

        ref = self._collection.document(account)

        @firestore.transactional
        def change(transaction: Any) -> AccountRecord:
            snap = ref.get(transaction=transaction)
            data = (snap.to_dict() or {}) if snap.exists else {}
            current = AccountRecord.from_document(account, data).status if snap.exists else None
            status = decide(current)
            now = datetime.datetime.now(tz=_UTC)
            update = {"status": str(status), "updated_at": now, "status_reason": reason[:500]}
            if not snap.exists:
                update["created_at"] = now
            transaction.set(ref, update, merge=True)
            return AccountRecord.from_document(account, {**data, **update})

        record: AccountRecord = change(self._firestore.transaction())
        self._forget()
        return record

    def _forget(self) -> None:
        with self._lock:
            self._cached = None
