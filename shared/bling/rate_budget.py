"""The account-wide request budget: every instance of every function together stays under BLING_RATE_BUDGET_PER_S.

A Firestore tick ledger (docs/decisions/001-account-rate-budget.md). Time is cut into ticks of 1/budget seconds;
tick n starts at n / budget (Unix time). To send one request a process claims a tick by create()-ing the document
`<prefix>_rate_ticks/<n>`: Firestore lets exactly one create of a document succeed, so each tick has one owner
whatever the number of instances, and each tick is a different document (no hot document, no membership).
The winner sleeps until its tick starts and sends at most `slack` later; a process that would be later than that
drops the tick and claims another. Any 1-second window therefore holds at most ceil((1 + slack_s) * budget)
sends (3 for the defaults: budget 2.8, slack 15 % of a tick).

Clocks: "now" is Firestore's clock, not the local one — the offset is learned from the server time of a read
before the first claim and of every claim's write — so a laptop whose clock runs ahead claims the same ticks as
the fleet instead of ticks an hour away. A tick in the ledger that starts more than BLING_RATE_MAX_WAIT_S ahead
(left there by a process with a skewed clock before this fix) is treated as skew, not as a queue to join; and no
claim sleeps longer than that cap: beyond it the account is oversubscribed and the work is better redelivered
(RetryableError) than held in a sleeping instance (docs/decisions/001).

Tick documents carry `expire_at` (now + 1 h) for the Firestore TTL policy on collection group `bling_rate_ticks`.
There is no other mode: code that must not touch Firestore gives BlingClient another budget (shared.bling.client).
A `RateLedger` is one account's (shared.deps.Account): it owns what it learned (the clock offset, the highest
tick it knows taken, its claim latency) and its stats; nothing here is process-global. Bling's 3 requests/s is
per account, so the ledger is keyed by it: tick n of account `a` is the document `<a>|<n, 12 digits>`, and its
highest tick is one query on a field only its documents carry (no composite index).

The fleet-wide cap (docs/decisions/012) is a second RateLedger at BLING_FLEET_RATE_PER_S, keyed FLEET_LEDGER_KEY
and shared by every account; shared.bling.fleet_limits combines the two through `claim()` (a slot, not yet waited
for) or `claim_within()` (inside a window of time) and `wait_for()`. Each ledger's tick grid is shifted by a phase
of its own (a fraction of a tick, from a hash of its key): with one grid for all, every account would want to
send in the same 15 % of each tick and the fleet's slots in the other 85 % would go unused.
"""
from __future__ import annotations

import dataclasses
import datetime
import hashlib
import math
import os
import random
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from shared import log, topology
from shared.config import Settings
from shared.errors import RetryableError

# A wait longer than this is worth a WARNING: the account is oversubscribed (many instances queueing).
_LONG_WAIT_S = 20.0
_HOLDER = f"{socket.gethostname()}:{os.getpid()}"
_CLOCK_WARN_S = 1.0
# The key of the fleet-wide ledger (docs/decisions/012): "_" is in no account id (shared.accounts), so no account's
# ticks can be the fleet's.
FLEET_LEDGER_KEY = "_fleet"
# An offset smaller than this is NTP-synced clocks plus the noise of our estimate (half a round trip): kept at 0.
_CLOCK_TRUST_S = 0.25


def grid_phase(key: str) -> float:
    """Where in a tick the grid of ledger `key` starts, in [0, 1): spread by a hash, so that accounts do not all
    send in the same part of each tick (only the fleet cap cares, ADR 012; "" has phase 0)."""
    if not key:
        return 0.0
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2.0**64


def warn_if_waited_long(started: float, tick: int) -> None:
    waited = time.monotonic() - started
    if waited > _LONG_WAIT_S:
        log.warning("waited long for a Bling request slot; the account budget is oversubscribed",
                    event="rate_budget_wait", waited_ms=round(waited * 1000), tick=tick)


@dataclasses.dataclass
class LedgerStats:
    """One ledger's counters, for measurements (docs/decisions/001) and debugging."""
    claims: int = 0
    conflicts: int = 0
    dropped_late: int = 0
    dropped_no_fleet_slot: int = 0  # the fleet-wide ledger had no slot inside this tick's window (ADR 012)
    queries: int = 0  # "highest tick held" queries
    clock_reads: int = 0  # reads of the clock document (the first claim of a ledger)
    claim_seconds: float = 0.0  # time spent in create() calls, successful or not
    wait_seconds: float = 0.0  # time spent sleeping until a claimed tick starts


@dataclasses.dataclass(frozen=True)
class Slot:
    """A claimed tick: the request may start in [start, end] (Firestore time); `ops` = Firestore calls it cost."""
    tick: int
    start: float
    end: float
    ops: int


class RateLedger:
    """The tick ledger of one account (or of the fleet). `ticks`: the Firestore collection (`<prefix>_rate_ticks`);
    `key`: whose ticks (the account id, or FLEET_LEDGER_KEY); `wall_clock`: the local clock (Firestore's time is
    this plus the learned offset; a seam for tests that skew it); `rate_per_s`: the budget (default
    BLING_RATE_BUDGET_PER_S). Tick n starts at (n + grid_phase(key)) / rate."""

    def __init__(self, ticks: Any, settings: Settings, key: str, wall_clock: Callable[[], float] = time.time, *,
                 rate_per_s: float | None = None):
        self._ticks = ticks
        self._key = key
        # The tick again under a field only this ledger's documents have: ordering by it reads this ledger's ticks
        # alone through Firestore's automatic single-field index (a filter on `ledger` plus an order on `tick`
        # would need a composite index, and document ids cannot be scanned in descending order).
        self.ledger_field = "tick_" + key.replace("-", "_")
        self._tick_s = 1.0 / (rate_per_s or settings.rate_budget_per_s)
        self._phase = grid_phase(key)
        self._slack_s = settings.rate_tick_slack * self._tick_s
        self._max_wait_s = settings.rate_max_wait_s
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._highest_taken = 0  # highest tick this ledger knows to be taken (by itself or by anyone)
        self._claim_latency_s = 0.05  # moving estimate of one create() round trip
        self._stats = LedgerStats()
        self._server_offset_s: float | None = None  # Firestore's clock minus ours, None until first learned
        self._skew_warned: set[str] = set()

    @property
    def slack_s(self) -> float:
        return self._slack_s

    @property
    def claim_latency_s(self) -> float:
        """The moving estimate of one create() round trip."""
        return self._claim_latency_s

    def acquire(self) -> int:
        """Block until this process may send one request to Bling; the Firestore calls it took."""
        started, ops = time.monotonic(), 0
        while True:
            slot = self.claim()
            ops += slot.ops
            if self.wait_for(slot.start, slot.end):
                warn_if_waited_long(started, slot.tick)
                return ops

    def claim(self, lead_s: float = 0.0) -> Slot:
        """Claim the next free tick still reachable after one claim round trip plus `lead_s` (the time the caller
        needs after this claim, e.g. a second ledger's claim); not waited for. RetryableError when none is free
        within BLING_RATE_MAX_WAIT_S."""
        while True:
            slot = self._claim_tick(lead_s)
            if slot is not None:
                return slot

    def claim_within(self, not_before: float, not_after: float) -> tuple[Slot | None, int]:
        """Claim a free tick whose start is in [not_before, not_after] (Firestore time) and still reachable (None
        when every such tick is taken), and the Firestore calls it took. Ticks are tried in order, ignoring the
        queue: a window's ticks may be free while later ones are held (the fleet ledger is claimed inside each
        account's window, out of order)."""
        from google.api_core import exceptions as gexc

        ops = self._sync_clock_once()
        tick_s = self._tick_s
        now = self._now()
        first = max(math.ceil(not_before / tick_s - self._phase),
                    math.ceil((now + self._claim_latency_s - self._slack_s) / tick_s - self._phase))
        candidate = first
        while (candidate + self._phase) * tick_s <= not_after:
            ops += 1
            try:
                slot = self._create(candidate, now)
            except (gexc.Conflict, gexc.AlreadyExists):
                with self._lock:
                    self._stats.conflicts += 1
                candidate += 1
                continue
            return dataclasses.replace(slot, ops=ops), ops
        return None, ops

    def wait_for(self, start: float, end: float) -> bool:
        """Sleep until `start` (Firestore time); False when it is already, or after the sleep, later than `end`
        (a slow claim, an oversleep): the slot is dropped and the caller claims another."""
        if self._now() > end:
            self._count_late()
            return False
        wait = min(start - self._now(), self._max_wait_s)
        if wait > 0:
            time.sleep(wait)
        if self._now() > end:  # overslept (a busy process): never send outside the tick's window
            self._count_late()
            return False
        with self._lock:
            self._stats.wait_seconds += max(0.0, wait)
        return True

    def count_dropped_for_fleet(self) -> None:
        with self._lock:
            self._stats.dropped_no_fleet_slot += 1

    def stats(self) -> LedgerStats:
        with self._lock:
            return dataclasses.replace(self._stats)

    def _now(self) -> float:
        """Firestore's time as best known: the local clock corrected by the learned offset."""
        return self._wall_clock() + (self._server_offset_s or 0.0)

    def _learn_offset(self, server_time: Any, sent_at: float, received_at: float) -> None:
        """One sample of Firestore's clock (a read's read_time or a write's update_time) taken between two local
        readings: the offset is the server time minus the midpoint."""
        if not isinstance(server_time, datetime.datetime):
            return
        offset = server_time.timestamp() - (sent_at + received_at) / 2
        offset = offset if abs(offset) >= _CLOCK_TRUST_S else 0.0
        with self._lock:
            first = self._server_offset_s is None
            self._server_offset_s = offset
        if first and abs(offset) > _CLOCK_WARN_S:
            log.warning(f"this machine's clock differs from Firestore's by {offset:+.1f} s; the rate ledger uses "
                        "Firestore's time", event="rate_clock_skew", offset_s=round(offset, 3))

    def _sync_clock_once(self) -> int:
        """Learn Firestore's clock before the first claim (one read); the Firestore calls made (0 or 1)."""
        from google.api_core import exceptions as gexc

        if self._server_offset_s is not None:
            return 0
        sent_at = self._wall_clock()
        try:
            snap = self._ticks.document("clock").get()  # never written: only its read_time (server time) matters
        except gexc.GoogleAPICallError as exc:
            raise RetryableError(f"rate ledger unavailable: {exc}") from exc
        self._learn_offset(getattr(snap, "read_time", None), sent_at, self._wall_clock())
        with self._lock:
            self._stats.clock_reads += 1
        return 1

    def _warn_skew_once(self, kind: str, **fields: Any) -> None:
        with self._lock:
            if kind in self._skew_warned:
                return
            self._skew_warned.add(kind)
        log.warning("ignored a rate-ledger tick far in the future (a process with a skewed clock wrote it)",
                    event="rate_tick_skew", **fields)

    def _start_of(self, tick: int) -> float:
        return (tick + self._phase) * self._tick_s

    def _create(self, candidate: int, now: float) -> Slot:
        """create() the tick's document (Conflict/AlreadyExists when someone holds it); the slot, ops=1."""
        from google.api_core import exceptions as gexc

        expire_at = topology.RATE_TICKS.expire_at(datetime.datetime.now(tz=datetime.UTC))
        sent_at = self._wall_clock()
        try:
            result = self._ticks.document(self.tick_id(candidate)).create({
                "tick": candidate, self.ledger_field: candidate, "ledger": self._key, "expire_at": expire_at,
                "holder": _HOLDER})
        except (gexc.Conflict, gexc.AlreadyExists):
            with self._lock:
                self._stats.claim_seconds += self._now() - now
            raise
        except gexc.GoogleAPICallError as exc:
            raise RetryableError(f"rate ledger unavailable: {exc}") from exc
        self._learn_offset(getattr(result, "update_time", None), sent_at, self._wall_clock())
        claimed_at = self._now()
        with self._lock:
            self._highest_taken = max(self._highest_taken, candidate)
            self._claim_latency_s = 0.8 * self._claim_latency_s + 0.2 * (claimed_at - now)
            self._stats.claims += 1
            self._stats.claim_seconds += claimed_at - now
        start = self._start_of(candidate)
        return Slot(candidate, start, start + self._slack_s, 1)

    def _claim_tick(self, lead_s: float) -> Slot | None:
        """One pass of claim(): a reachable slot, or None after a claim that came back too late (dropped)."""
        from google.api_core import exceptions as gexc

        tick_s, slack_s, phase = self._tick_s, self._slack_s, self._phase
        max_wait_s = self._max_wait_s
        ops = self._sync_clock_once()
        conflicts_here = 0
        while True:
            now = self._now()
            with self._lock:
                # The first tick whose send window [start, start + slack] we can still reach after the claim round
                # trip (and the caller's lead).
                earliest = math.ceil((now + self._claim_latency_s + lead_s - slack_s) / tick_s - phase)
                candidate = max(earliest, self._highest_taken + 1)
            # Processes that just collided would collide again on the same next tick; spread them a little.
            candidate += random.randint(0, 1 if conflicts_here >= 2 else 0)
            if self._start_of(candidate) - now > max_wait_s:
                # Every slot within the cap is taken: the account is oversubscribed; let Pub/Sub redeliver later.
                raise RetryableError(f"rate budget oversubscribed: no slot within {max_wait_s:.0f} s")
            ops += 1
            try:
                slot = self._create(candidate, now)
            except (gexc.Conflict, gexc.AlreadyExists):
                conflicts_here += 1
                highest = candidate
                if conflicts_here == 1 or conflicts_here % 3 == 0:
                    ops += 1
                    in_ledger = self._highest_tick_in_ledger(self._ticks)
                    if self._start_of(in_ledger) - now > max_wait_s:
                        self._warn_skew_once(str(in_ledger), tick=in_ledger,
                                             ahead_s=round(self._start_of(in_ledger) - now))
                    else:
                        highest = max(highest, in_ledger)
                with self._lock:
                    self._highest_taken = max(self._highest_taken, highest)
                    self._stats.conflicts += 1
                continue
            if self._now() > slot.end - lead_s:
                self._count_late()
                return None
            return dataclasses.replace(slot, ops=ops)

    def tick_id(self, tick: int) -> str:
        """The document id of tick `tick` in this ledger."""
        return f"{self._key}|{tick:012d}"

    def _highest_tick_in_ledger(self, ticks: Any) -> int:
        """The highest tick anyone holds in this ledger: one query on its own field (see _ledger_field), so a queue
        of instances skips ahead in one step."""
        from google.cloud import firestore

        with self._lock:
            self._stats.queries += 1
        docs = list(ticks.order_by(self.ledger_field, direction=firestore.Query.DESCENDING).limit(1).stream())
        return int(docs[0].get("tick")) if docs else 0

    def _count_late(self) -> None:
        with self._lock:
            self._stats.dropped_late += 1
