"""The fleet-wide limits under Bling's per-IP rules (docs/decisions/012): on when the deployment sends from one
static egress IP, where an IP block for one account is a block for every account.

- **Requests** (`BLING_FLEET_RATE_PER_S`, 0 = off): every Bling request of every account also holds a slot of one
  ledger shared by all accounts, the same tick ledger as an account's (shared.bling.rate_budget, ADR 001) at the
  fleet's rate, over the documents `<prefix>_rate_ticks` keyed "fleet" (shared.deps). A request is sent inside
  the send windows of both its account's tick and a fleet tick: the account's tick is claimed first, then a fleet
  tick whose window overlaps it; when every such fleet tick is taken, the account's tick is dropped and the next
  one tried. Token calls hold a fleet slot only (they are not counted in the account's 3/s).
- **Errors** (`BLING_FLEET_ERRORS_PER_10S`, 0 = off): every error answer (4xx, 5xx, no answer) of every account is
  counted per 10-s window in Firestore; while the current and the previous window together hold the cap, no
  instance starts a request until the window passes (Bling blocks the IP at 300 errors in 10 s). Each process
  re-reads the counts at most once a second: requests started on a count up to 1 s old are bounded by the fleet's
  request cap (about 40 in that second), which is the margin the default 250 leaves under 300.
"""
from __future__ import annotations

import datetime
import math
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from shared import log, topology
from shared.bling.rate_budget import Slot
from shared.errors import RetryableError

ERROR_WINDOW_S = 10.0
_RECHECK_S = 1.0  # how long a process trusts its last read of the fleet's error counts
_ERROR_DOC = "fleet_errors_"


class SlotLedger(Protocol):
    """What the fleet budget needs of a tick ledger (shared.bling.rate_budget.RateLedger)."""

    @property
    def slack_s(self) -> float: ...

    @property
    def claim_latency_s(self) -> float: ...

    def acquire(self) -> int: ...

    def claim(self, lead_s: float = 0.0) -> Slot: ...

    def claim_within(self, not_before: float, not_after: float) -> tuple[Slot | None, int]: ...

    def wait_for(self, start: float, end: float) -> bool: ...

    def count_dropped_for_fleet(self) -> None: ...


class ErrorCounts(Protocol):
    """Error answers per 10-s window, shared by every instance (FirestoreErrorCounts)."""

    def add(self, window: int) -> None: ...

    def get(self, windows: list[int]) -> list[int]: ...


class FirestoreErrorCounts:
    """`<prefix>_rate_state/fleet_errors_<window>`: {errors: n} incremented by every instance (a server-side
    increment: no read, no transaction), kept 3 days by the collection's TTL."""

    def __init__(self, client: Any, rate_state: Any):
        self._client = client
        self._docs = rate_state

    def add(self, window: int) -> None:
        from google.api_core import exceptions as gexc
        from google.cloud import firestore

        now = datetime.datetime.now(tz=datetime.UTC)
        try:
            self._docs.document(f"{_ERROR_DOC}{window}").set(
                {"errors": firestore.Increment(1), "window_start": window * ERROR_WINDOW_S,
                 "expire_at": topology.RATE_STATE.expire_at(now)}, merge=True)
        except gexc.GoogleAPICallError as exc:
            # Losing one count must not turn Bling's answer into another error: the call's own outcome stands.
            log.warning("could not count a Bling error answer fleet-wide", event="bling_fleet_error_count_failed",
                        error=type(exc).__name__)

    def get(self, windows: list[int]) -> list[int]:
        from google.api_core import exceptions as gexc

        refs = [self._docs.document(f"{_ERROR_DOC}{w}") for w in windows]
        try:
            by_id = {snap.id: int((snap.to_dict() or {}).get("errors") or 0) for snap in self._client.get_all(refs)}
        except gexc.GoogleAPICallError as exc:
            raise RetryableError(f"fleet error counts unavailable: {exc}") from exc
        return [by_id.get(f"{_ERROR_DOC}{w}", 0) for w in windows]


class FleetErrorCap:
    """The fleet's error answers against BLING_FLEET_ERRORS_PER_10S. One per process (shared.deps.Deps)."""

    def __init__(self, counts: ErrorCounts, limit_per_10s: int, clock: Callable[[], float] = time.time):
        self._counts = counts
        self._limit = limit_per_10s
        self._clock = clock
        self._lock = threading.Lock()
        self._known: dict[int, int] = {}  # window -> errors, as last read (plus this process's own since)
        self._read_at = -math.inf
        self._warned_window = -1

    def count_error(self) -> None:
        """One error answer (or no answer) from Bling, for any account."""
        window = int(self._clock() // ERROR_WINDOW_S)
        self._counts.add(window)
        with self._lock:
            self._known[window] = self._known.get(window, 0) + 1

    def paused_until(self) -> float:
        """Until when (epoch seconds) no request may start; 0 when the fleet is under the cap."""
        now = self._clock()
        window = int(now // ERROR_WINDOW_S)
        with self._lock:
            fresh = now - self._read_at < _RECHECK_S
        if not fresh:
            previous, current = self._counts.get([window - 1, window])
            with self._lock:
                self._known = {window - 1: previous, window: current}
                self._read_at = now
        with self._lock:
            errors = self._known.get(window - 1, 0) + self._known.get(window, 0)
        # Bling's 10 s slide; our windows are aligned: any 10 s lies within the previous and the current window.
        if errors < self._limit:
            return 0.0
        until = (window + 1) * ERROR_WINDOW_S
        if self._warned_window != window:
            self._warned_window = window
            log.warning("the fleet's Bling error answers reached the cap; no request starts until the window passes",
                        event="bling_fleet_error_pause", errors=errors, limit_per_10s=self._limit,
                        paused_s=round(until - now, 1))
        return until

    def wait_while_paused(self, max_wait_s: float, sleep: Callable[[float], None] = time.sleep) -> None:
        """Sleep while the fleet is paused; RetryableError when the pause would last longer than max_wait_s."""
        while True:
            until = self.paused_until()
            wait = until - self._clock()
            if wait <= 0:
                return
            if wait > max_wait_s:
                raise RetryableError(f"Bling error cap of the fleet reached; paused for {wait:.0f} s")
            sleep(wait)


class FleetBudget:
    """One account's request budget inside the fleet's: the client's RateBudget when the fleet cap is on."""

    def __init__(self, account: SlotLedger, fleet: SlotLedger | None, errors: FleetErrorCap | None,
                 max_wait_s: float, sleep: Callable[[float], None] = time.sleep):
        self._account = account
        self._fleet = fleet
        self._errors = errors
        self._max_wait_s = max_wait_s
        self._sleep = sleep

    def acquire(self) -> int:
        """Block until this account and the fleet may send one request; the Firestore calls it took."""
        if self._errors is not None:
            self._errors.wait_while_paused(self._max_wait_s, self._sleep)
        if self._fleet is None:
            return self._account.acquire()
        account, fleet = self._account, self._fleet
        ops = 0
        while True:
            # Claim the account's tick early enough that the fleet's claim still fits in before it starts.
            slot = account.claim(lead_s=fleet.claim_latency_s)
            ops += slot.ops
            # A send at max(a, f) is inside both windows when f <= a_end and a <= f_end, i.e. f >= a - f_slack.
            shared, fleet_ops = fleet.claim_within(slot.start - fleet.slack_s, slot.end)
            ops += fleet_ops
            if shared is None:
                account.count_dropped_for_fleet()
                continue
            if account.wait_for(max(slot.start, shared.start), min(slot.end, shared.end)):
                return ops

    def count_error(self) -> None:
        if self._errors is not None:
            self._errors.count_error()


class TokenCallBudget:
    """What a token-endpoint call takes when the fleet cap is on: a fleet slot and the error pause (token calls
    are the IP's, not an account's: they hold no account tick)."""

    def __init__(self, fleet: SlotLedger | None, errors: FleetErrorCap | None, max_wait_s: float):
        self._fleet = fleet
        self._errors = errors
        self._max_wait_s = max_wait_s

    def acquire(self) -> int:
        if self._errors is not None:
            self._errors.wait_while_paused(self._max_wait_s)
        return self._fleet.acquire() if self._fleet is not None else 0

    def count_error(self) -> None:
        if self._errors is not None:
            self._errors.count_error()
