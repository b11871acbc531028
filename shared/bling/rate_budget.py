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
"""
from __future__ import annotations

import dataclasses
import datetime
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
# An offset smaller than this is NTP-synced clocks plus the noise of our estimate (half a round trip): kept at 0.
_CLOCK_TRUST_S = 0.25


@dataclasses.dataclass
class LedgerStats:
    """One ledger's counters, for measurements (docs/decisions/001) and debugging."""
    claims: int = 0
    conflicts: int = 0
    dropped_late: int = 0
    claim_seconds: float = 0.0  # time spent in create() calls, successful or not
    wait_seconds: float = 0.0  # time spent sleeping until a claimed tick starts


class RateLedger:
    """The tick ledger of one account. `ticks`: the Firestore collection (`<prefix>_rate_ticks`); `key`: whose
    ticks (the account id); `wall_clock`: the local clock (Firestore's time is this plus the learned offset; a seam
    for tests that skew it)."""

    def __init__(self, ticks: Any, settings: Settings, key: str, wall_clock: Callable[[], float] = time.time):
        self._ticks = ticks
        self._key = key
        # The tick again under a field only this ledger's documents have: ordering by it reads this ledger's ticks
        # alone through Firestore's automatic single-field index (a filter on `ledger` plus an order on `tick`
        # would need a composite index, and document ids cannot be scanned in descending order).
        self.ledger_field = "tick_" + key.replace("-", "_")
        self._tick_s = 1.0 / settings.rate_budget_per_s
        self._slack_s = settings.rate_tick_slack * self._tick_s
        self._max_wait_s = settings.rate_max_wait_s
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._highest_taken = 0  # highest tick this ledger knows to be taken (by itself or by anyone)
        self._claim_latency_s = 0.05  # moving estimate of one create() round trip
        self._stats = LedgerStats()
        self._server_offset_s: float | None = None  # Firestore's clock minus ours, None until first learned
        self._skew_warned: set[str] = set()

    def acquire(self) -> None:
        """Block until this process may send one request to Bling."""
        self._acquire_tick(self._tick_s, self._slack_s)

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

    def _sync_clock(self, ticks: Any) -> None:
        sent_at = self._wall_clock()
        snap = ticks.document("clock").get()  # never written: only its read_time (server time) matters
        self._learn_offset(getattr(snap, "read_time", None), sent_at, self._wall_clock())

    def _warn_skew_once(self, kind: str, **fields: Any) -> None:
        with self._lock:
            if kind in self._skew_warned:
                return
            self._skew_warned.add(kind)
        log.warning("ignored a rate-ledger tick far in the future (a process with a skewed clock wrote it)",
                    event="rate_tick_skew", **fields)

    def _acquire_tick(self, tick_s: float, slack_s: float) -> None:
        from google.api_core import exceptions as gexc

        ticks = self._ticks
        max_wait_s = self._max_wait_s
        started = time.monotonic()
        conflicts_here = 0
        try:
            if self._server_offset_s is None:
                self._sync_clock(ticks)
        except gexc.GoogleAPICallError as exc:
            raise RetryableError(f"rate ledger unavailable: {exc}") from exc
        while True:
            now = self._now()
            with self._lock:
                # The first tick whose send window [start, start + slack] we can still reach after the claim round trip.
                earliest = math.ceil((now + self._claim_latency_s - slack_s) / tick_s)
                candidate = max(earliest, self._highest_taken + 1)
            # Processes that just collided would collide again on the same next tick; spread them a little.
            candidate += random.randint(0, 1 if conflicts_here >= 2 else 0)
            if candidate * tick_s - now > max_wait_s:
                # Every slot within the cap is taken: the account is oversubscribed; let Pub/Sub redeliver later.
                raise RetryableError(f"rate budget oversubscribed: no slot within {max_wait_s:.0f} s")
            expire_at = topology.RATE_TICKS.expire_at(datetime.datetime.now(tz=datetime.UTC))
            sent_at = self._wall_clock()
            try:
                result = ticks.document(self.tick_id(candidate)).create({
                    "tick": candidate, self.ledger_field: candidate, "ledger": self._key, "expire_at": expire_at,
                    "holder": _HOLDER})
            except (gexc.Conflict, gexc.AlreadyExists):
                conflicts_here += 1
                highest = candidate
                if conflicts_here == 1 or conflicts_here % 3 == 0:
                    in_ledger = self._highest_tick_in_ledger(ticks)
                    if in_ledger * tick_s - now > max_wait_s:
                        self._warn_skew_once(str(in_ledger), tick=in_ledger, ahead_s=round(in_ledger * tick_s - now))
                    else:
                        highest = max(highest, in_ledger)
                with self._lock:
                    self._highest_taken = max(self._highest_taken, highest)
                    self._stats.conflicts += 1
                    self._stats.claim_seconds += self._now() - now
                continue
            except gexc.GoogleAPICallError as exc:
                raise RetryableError(f"rate ledger unavailable: {exc}") from exc
            self._learn_offset(getattr(result, "update_time", None), sent_at, self._wall_clock())
            claimed_at = self._now()
            start = candidate * tick_s
            with self._lock:
                self._highest_taken = max(self._highest_taken, candidate)
                self._claim_latency_s = 0.8 * self._claim_latency_s + 0.2 * (claimed_at - now)
                self._stats.claims += 1
                self._stats.claim_seconds += claimed_at - now
            if claimed_at > start + slack_s:
                self._count_late()
                continue
            wait = min(start - self._now(), max_wait_s)
            if wait > 0:
                time.sleep(wait)
            if self._now() > start + slack_s:  # overslept (a busy process): never send outside the tick's window
                self._count_late()
                continue
            waited = time.monotonic() - started
            with self._lock:
                self._stats.wait_seconds += max(0.0, wait)
            if waited > _LONG_WAIT_S:
                log.warning("waited long for a Bling request slot; the account budget is oversubscribed",
                            event="rate_budget_wait", waited_ms=round(waited * 1000), tick=candidate)
            return

    def tick_id(self, tick: int) -> str:
        """The document id of tick `tick` in this ledger."""
        return f"{self._key}|{tick:012d}"

    def _highest_tick_in_ledger(self, ticks: Any) -> int:
        """The highest tick anyone holds in this ledger: one query on its own field (see _ledger_field), so a queue
        of instances skips ahead in one step."""
        from google.cloud import firestore

        docs = list(ticks.order_by(self.ledger_field, direction=firestore.Query.DESCENDING).limit(1).stream())
        return int(docs[0].get("tick")) if docs else 0

    def _count_late(self) -> None:
        with self._lock:
            self._stats.dropped_late += 1
