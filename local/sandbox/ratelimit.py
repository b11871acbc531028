"""Bling's account rate limits, IP blocks, and the request log the stats are computed from.

Account limit (API-NOTES §2.3): 3 requests/s and 120,000/day per Bling account, across every endpoint. Modelled as
a sliding window over the arrival times of ACCEPTED requests: a request is accepted when fewer than `cap`
accepted requests arrived in the last `window` seconds. Rejected (429) requests do NOT count toward the window:
Bling does not document it either way, and counting them would let a client that hammers lock itself out
forever, which would hide whether its pacing is right. (They do count toward the IP-block error rule, as on Bling.)

For rate >= 1 the window is 1 s and the cap floor(rate); for rate < 1 the window is 1/rate s and the cap 1.

IP blocks (API-NOTES §2.3): 20 calls to /oauth/token in 60 s → 60 min; 300 errors in 10 s → 10 min; 600 requests in
10 s → 10 min. All thresholds are knobs; the block is recorded so tests can assert it never happened.

No method here takes a lock: the server calls them under its own lock.
"""
from __future__ import annotations

import collections
import dataclasses
import datetime
import math
import time
from typing import Any


class AccountLimiter:
    def __init__(self, rate_per_s: float, daily_limit: int) -> None:
        self.rate_per_s = float(rate_per_s)
        self.daily_limit = int(daily_limit)
        self._accepted: collections.deque[float] = collections.deque()
        self._day = ""
        self._day_count = 0

    @property
    def window_and_cap(self) -> tuple[float, int]:
        if self.rate_per_s >= 1:
            return 1.0, math.floor(self.rate_per_s)
        return 1.0 / max(self.rate_per_s, 1e-6), 1

    def try_acquire(self, now: float, day: str | None = None) -> str | None:
        """None when accepted (and counted); "day" or "second" when the request must get a 429."""
        day = day or datetime.date.today().isoformat()
        if day != self._day:
            self._day, self._day_count = day, 0
        if self._day_count >= self.daily_limit:
            return "day"
        window, cap = self.window_and_cap
        while self._accepted and now - self._accepted[0] >= window:
            self._accepted.popleft()
        if len(self._accepted) >= cap:
            return "second"
        self._accepted.append(now)
        self._day_count += 1
        return None

    def set_daily_used(self, used: int, day: str | None = None) -> int:
        """Admin: count `used` requests against today's quota (daily_limit = exhausted, 0 = fresh)."""
        self._day = day or datetime.date.today().isoformat()
        self._day_count = max(0, int(used))
        return self._day_count

    def daily_used(self, day: str | None = None) -> int:
        return self._day_count if self._day == (day or datetime.date.today().isoformat()) else 0

    def limit_value(self, period: str) -> int | float:
        if period == "day":
            return self.daily_limit
        return int(self.rate_per_s) if float(self.rate_per_s).is_integer() else self.rate_per_s


@dataclasses.dataclass
class IpBlockRules:
    token_calls: int = 20          # more than this many /oauth/token calls ...
    token_window_s: float = 60.0   # ... in this window ...
    token_block_s: float = 3600.0  # ... blocks the IP this long.
    errors: int = 300              # this many error responses (>= 400, or dropped) in 10 s → block
    requests: int = 600            # this many API requests in 10 s → block
    window_s: float = 10.0
    block_s: float = 600.0
    enabled: bool = True           # the 10-second rules; the token rule is always on


class IpGuard:
    def __init__(self, rules: IpBlockRules | None = None) -> None:
        self.rules = rules or IpBlockRules()
        self.blocked_until = 0.0
        self.ever_blocked = False
        self.block_reasons: list[str] = []
        self._token_calls: collections.deque[float] = collections.deque()
        self._requests: collections.deque[float] = collections.deque()
        self._errors: collections.deque[float] = collections.deque()

    def is_blocked(self, now: float) -> bool:
        return now < self.blocked_until

    def _block(self, now: float, seconds: float, reason: str) -> None:
        self.blocked_until = max(self.blocked_until, now + seconds)
        self.ever_blocked = True
        self.block_reasons.append(reason)

    def note_token_call(self, now: float) -> None:
        calls = self._token_calls
        calls.append(now)
        while calls and now - calls[0] >= self.rules.token_window_s:
            calls.popleft()
        if len(calls) > self.rules.token_calls:
            reason = f"{len(calls)} /oauth/token calls in {self.rules.token_window_s:g}s"
            self._block(now, self.rules.token_block_s, reason)

    def note_response(self, now: float, is_error: bool) -> None:
        if not self.rules.enabled:
            return
        for q, add, limit, what in ((self._requests, True, self.rules.requests, "requests"),
                                    (self._errors, is_error, self.rules.errors, "errors")):
            if add:
                q.append(now)
            while q and now - q[0] >= self.rules.window_s:
                q.popleft()
            if add and len(q) >= limit:
                self._block(now, self.rules.block_s, f"{len(q)} {what} in {self.rules.window_s:g}s")
                q.clear()

    def unblock(self) -> None:
        self.blocked_until = 0.0

    def reset_history(self) -> None:
        self.ever_blocked = False
        self.block_reasons = []
        self._token_calls.clear()
        self._requests.clear()
        self._errors.clear()


@dataclasses.dataclass
class RequestRecord:
    t_mono: float       # arrival, time.monotonic() (CLOCK_MONOTONIC: comparable across processes on one host)
    t_wall: float       # arrival, time.time()
    kind: str           # nfe_list, nfe_detail, contato, produtos_list, produto, forma_pagamento, other
    method: str
    path: str
    counted: bool = False  # accepted by the account limiter (counts toward the 3/s window)
    status: int = 0        # 0 = connection dropped without a response
    rate_limited: bool = False
    account: str | None = None  # the account the bearer token belongs to; None for a missing or unknown token


def max_in_window(times: list[float], window: float) -> int:
    """Most arrival times inside any half-open window [t, t + window)."""
    times = sorted(times)
    best = i = 0
    for j, t in enumerate(times):
        while t - times[i] >= window:
            i += 1
        best = max(best, j - i + 1)
    return best


KINDS = ("nfe_list", "nfe_detail", "contato", "produtos_list", "produto", "forma_pagamento", "other")


def compute_stats(records: list[RequestRecord], token_times: list[float], guard: IpGuard,
                  authorize_calls: int) -> dict[str, Any]:
    by_kind = dict.fromkeys(KINDS, 0)
    by_status: dict[str, int] = {}
    for r in records:
        by_kind[r.kind] = by_kind.get(r.kind, 0) + 1
        by_status[str(r.status)] = by_status.get(str(r.status), 0) + 1
    return {
        "requests_total": len(records),
        "requests_by_kind": by_kind,
        "responses_by_status": dict(sorted(by_status.items())),
        "responses_429": sum(1 for r in records if r.status == 429),
        "responses_429_rate_limit": sum(1 for r in records if r.rate_limited),
        "token_calls": len(token_times),
        "token_calls_max_in_60s": max_in_window(token_times, 60.0),
        "authorize_calls": authorize_calls,
        "ip_blocked": guard.ever_blocked or guard.is_blocked(time.monotonic()),
        "ip_block_reasons": list(guard.block_reasons),
        "max_requests_in_any_1s": max_in_window([r.t_mono for r in records if r.counted], 1.0),
        "max_requests_in_any_10s": max_in_window([r.t_mono for r in records], 10.0),
        "max_errors_in_any_10s": max_in_window([r.t_mono for r in records if r.status >= 400 or r.status == 0], 10.0),
        "first_request_at": records[0].t_wall if records else None,
        "last_request_at": records[-1].t_wall if records else None,
    }
