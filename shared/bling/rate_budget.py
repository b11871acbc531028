"""The account-wide request budget: every instance of every function together stays under BLING_RATE_BUDGET_PER_S.

A Firestore tick ledger (docs/decisions/001-account-rate-budget.md). Time is cut into ticks of 1/budget seconds;
tick n starts at n / budget (Unix time). To send one request a process claims a tick by create()-ing the document
`<prefix>_rate_ticks/<n>`: Firestore lets exactly one create of a document succeed, so each tick has one owner
whatever the number of instances, and each tick is a different document (no hot document, no membership).
The winner sleeps until its tick starts and sends at most `slack` later; a process that would be later than that
drops the tick and claims another. Any 1-second window therefore holds at most ceil((1 + slack_s) * budget)
sends (3 for the defaults: budget 2.8, slack 15 % of a tick), given NTP-synced clocks.

Tick documents carry `expire_at` (now + 1 h) for the Firestore TTL policy on collection group `bling_rate_ticks`.
BLING_RATE_LEDGER=local replaces the ledger by in-process pacing, for pure unit tests only.
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

from shared import firestore_client, log
from shared.config import get_settings
from shared.errors import RetryableError

TICK_TTL = datetime.timedelta(hours=1)
# A wait longer than this is worth a WARNING: the account is oversubscribed (many instances queueing).
_LONG_WAIT_S = 20.0
_HOLDER = f"{socket.gethostname()}:{os.getpid()}"


@dataclasses.dataclass
class LedgerStats:
    """Process-wide counters, for measurements (docs/decisions/001) and debugging."""
    claims: int = 0
    conflicts: int = 0
    dropped_late: int = 0
    claim_seconds: float = 0.0  # time spent in create() calls, successful or not
    wait_seconds: float = 0.0  # time spent sleeping until a claimed tick starts


_lock = threading.Lock()
_highest_taken = 0  # highest tick this process knows to be taken (by itself or by anyone)
_claim_latency_s = 0.05  # moving estimate of one create() round trip
_local_next_send = 0.0
_stats = LedgerStats()


def acquire() -> None:
    """Block until this process may send one request to Bling."""
    settings = get_settings()
    tick_s = 1.0 / settings.rate_budget_per_s
    slack_s = settings.rate_tick_slack * tick_s
    if settings.rate_ledger == "local":
        _acquire_local(tick_s)
    else:
        _acquire_tick(tick_s, slack_s)


def stats() -> LedgerStats:
    with _lock:
        return dataclasses.replace(_stats)


def reset() -> None:
    """Forget the process-wide state (tests)."""
    global _highest_taken, _claim_latency_s, _local_next_send, _stats
    with _lock:
        _highest_taken, _claim_latency_s, _local_next_send, _stats = 0, 0.05, 0.0, LedgerStats()


def _acquire_tick(tick_s: float, slack_s: float) -> None:
    global _highest_taken, _claim_latency_s
    from google.api_core import exceptions as gexc

    ticks = firestore_client.collection("rate_ticks")
    started = time.monotonic()
    conflicts_here = 0
    while True:
        now = time.time()
        with _lock:
            # The first tick whose send window [start, start + slack] we can still reach after the claim round trip.
            earliest = math.ceil((now + _claim_latency_s - slack_s) / tick_s)
            candidate = max(earliest, _highest_taken + 1)
        # Processes that just collided would collide again on the same next tick; spread them a little.
        candidate += random.randint(0, 1 if conflicts_here >= 2 else 0)
        expire_at = datetime.datetime.now(tz=datetime.timezone.utc) + TICK_TTL
        try:
            ticks.document(str(candidate)).create({"tick": candidate, "expire_at": expire_at, "holder": _HOLDER})
        except (gexc.Conflict, gexc.AlreadyExists):
            conflicts_here += 1
            highest = candidate
            if conflicts_here == 1 or conflicts_here % 3 == 0:
                highest = max(highest, _highest_tick_in_ledger(ticks))
            with _lock:
                _highest_taken = max(_highest_taken, highest)
                _stats.conflicts += 1
                _stats.claim_seconds += time.time() - now
            continue
        except gexc.GoogleAPICallError as exc:
            raise RetryableError(f"rate ledger unavailable: {exc}") from exc
        claimed_at = time.time()
        start = candidate * tick_s
        with _lock:
            _highest_taken = max(_highest_taken, candidate)
            _claim_latency_s = 0.8 * _claim_latency_s + 0.2 * (claimed_at - now)
            _stats.claims += 1
            _stats.claim_seconds += claimed_at - now
        if claimed_at > start + slack_s:
            _count_late()
            continue
        wait = start - time.time()
        if wait > 0:
            time.sleep(wait)
        if time.time() > start + slack_s:  # overslept (a busy process): never send outside the tick's window
            _count_late()
            continue
        waited = time.monotonic() - started
        with _lock:
            _stats.wait_seconds += max(0.0, wait)
        if waited > _LONG_WAIT_S:
            log.warning("waited long for a Bling request slot; the account budget is oversubscribed",
                        event="rate_budget_wait", waited_ms=round(waited * 1000), tick=candidate)
        return


def _highest_tick_in_ledger(ticks) -> int:
    """The highest tick anyone holds: one indexed query, so a queue of instances skips ahead in one step."""
    from google.cloud import firestore

    docs = list(ticks.order_by("tick", direction=firestore.Query.DESCENDING).limit(1).stream())
    return int(docs[0].get("tick")) if docs else 0


def _count_late() -> None:
    with _lock:
        _stats.dropped_late += 1


def _acquire_local(tick_s: float) -> None:
    """In-process pacing: correct for one process only. Pure unit tests; never the deployed functions."""
    global _local_next_send
    with _lock:
        now = time.monotonic()
        send_at = max(now, _local_next_send)
        _local_next_send = send_at + tick_s
    if send_at > now:
        time.sleep(send_at - now)
