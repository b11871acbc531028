"""Fault injection for the API endpoints (never /__admin, never /oauth): what a flaky Bling or its load balancer does.

All faults are off by default and set as a whole with `POST /__admin/faults` (an empty object clears them):

| key | effect |
|---|---|
| `status_5xx_share` | share of requests answered 500/502/503 with an HTML body (as a load balancer) |
| `storm_429` | `{"every_n": N, "length": M}`: of every N requests the last M get a 429; a number: a share |
| `slow_share`, `slow_s` | share of requests delayed by `slow_s` extra seconds |
| `reset_share` | share of requests whose connection is closed without any response |
| `hang_share`, `hang_s` | share of requests held `hang_s` s (default 35), then closed unanswered: a hung upstream |
| `truncated_json_share` | share of 200 answers whose JSON body is cut in half (Content-Length matches the cut) |
| `page_overlap` | GET /nfe page p > 1 starts `page_overlap` items before where it should (true = 3) |
| `page_oversize` | GET /nfe pages carry `page_oversize` extra items from the next page (true = 3) |
| `expire_token_after_n` | after N more authenticated calls, every access token expires (the next call gets 401) |
| `expire_token_every_s` | every N seconds (from when the faults are set), every access token expires |
| `seed` | seed of the fault RNG (default 0), so a single-threaded client sees the same faults on every run |

Injected 5xx, 429 storms, hangs and resets happen before the account limiter, so they do not use up the 3/s budget (a
load balancer answering does not reach Bling's counter); the server still records them in the stats.
"""
from __future__ import annotations

import dataclasses
import random
import time
from typing import Any

_KEYS = {"status_5xx_share", "storm_429", "slow_share", "slow_s", "reset_share", "truncated_json_share",
         "page_overlap", "page_oversize", "expire_token_after_n", "seed", "hang_share", "hang_s",
         "expire_token_every_s"}


@dataclasses.dataclass
class Decision:
    reset: bool = False
    status_5xx: int = 0
    storm_429: bool = False
    slow_s: float = 0.0
    truncate: bool = False
    hang_s: float = 0.0


class FaultInjector:
    def __init__(self) -> None:
        self.configure({})

    def configure(self, spec: dict[str, Any]) -> None:
        unknown = set(spec) - _KEYS
        if unknown:
            raise ValueError(f"unknown fault keys: {sorted(unknown)}")
        self.spec = dict(spec)
        self.status_5xx_share = float(spec.get("status_5xx_share") or 0)
        storm = spec.get("storm_429")
        self.storm_every = self.storm_length = 0
        self.storm_share = 0.0
        if isinstance(storm, dict):
            self.storm_every = int(storm.get("every_n", 0))
            self.storm_length = int(storm.get("length", 0))
        elif storm:
            self.storm_share = float(storm)
        self.slow_share = float(spec.get("slow_share") or 0)
        self.slow_s = float(spec.get("slow_s") or 0)
        self.reset_share = float(spec.get("reset_share") or 0)
        self.truncated_json_share = float(spec.get("truncated_json_share") or 0)
        self.page_overlap = _count(spec.get("page_overlap"))
        self.page_oversize = _count(spec.get("page_oversize"))
        after = spec.get("expire_token_after_n")
        self.expire_countdown: int | None = int(after) if after is not None else None
        self.hang_share = float(spec.get("hang_share") or 0)
        hang_s = spec.get("hang_s")
        self.hang_s = 35.0 if hang_s is None else float(hang_s)
        # 0 = no periodic expiry; otherwise the first one is a period after the faults are set.
        self.expire_every_s = float(spec.get("expire_token_every_s") or 0)
        self._next_expiry = time.monotonic() + self.expire_every_s if self.expire_every_s else None
        self._rng = random.Random(int(spec.get("seed") or 0))
        # Hangs draw from their own generator, so adding them left every older fault sequence as it was.
        self._hang_rng = random.Random(int(spec.get("seed") or 0) + 1)
        self._n = 0

    def decide(self) -> Decision:
        """One draw per API request, always the same number of random numbers, so runs are reproducible."""
        r_reset, r_5xx, r_code, r_storm, r_slow, r_trunc = (self._rng.random() for _ in range(6))
        k = self._n
        self._n += 1
        d = Decision()
        d.reset = r_reset < self.reset_share
        if r_5xx < self.status_5xx_share:
            d.status_5xx = (500, 502, 503)[int(r_code * 3)]
        if self.storm_every > 0 and self.storm_length > 0:
            d.storm_429 = k % self.storm_every >= self.storm_every - self.storm_length
        elif self.storm_share:
            d.storm_429 = r_storm < self.storm_share
        if r_slow < self.slow_share:
            d.slow_s = self.slow_s
        d.truncate = r_trunc < self.truncated_json_share
        if self._hang_rng.random() < self.hang_share and not (d.reset or d.status_5xx or d.storm_429):
            d.hang_s = self.hang_s
        return d

    def tick_token_expiry(self, now: float | None = None) -> bool:
        """Called on each authenticated request; True when the access tokens must expire now."""
        if self._next_expiry is not None:
            now = time.monotonic() if now is None else now
            if now >= self._next_expiry:
                # One expiry per period however long the API was idle: the next one is a period from now.
                self._next_expiry = now + self.expire_every_s
                return True
        if self.expire_countdown is None:
            return False
        if self.expire_countdown <= 0:
            self.expire_countdown = None
            return True
        self.expire_countdown -= 1
        return False


def _count(value: Any) -> int:
    if value is True:
        return 3
    return int(value or 0)


HTML_5XX = {
    500: "500 Internal Server Error",
    502: "502 Bad Gateway",
    503: "503 Service Temporarily Unavailable",
}


def html_body(status: int) -> bytes:
    title = HTML_5XX.get(status, f"{status} Error")
    return (f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n"
            f"<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n").encode("ascii")
