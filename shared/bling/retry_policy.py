"""Which Bling answers the client retries in-process, how often and how long: one table.

Every attempt takes its own slot from the account rate budget, so retries never raise the request rate; the
attempt counts and the total deadline keep one call's worst case well under a minute and far from Bling's IP
blocks (300 errors or 600 requests in 10 s). What is not retried here is raised to the caller: retryable errors
go back to Pub/Sub (redelivery with its own backoff), permanent ones are dropped with a log line.
"""
from __future__ import annotations

import dataclasses
import enum
import random


class Outcome(enum.StrEnum):
    OK = "ok"
    SERVER_ERROR = "server_error"  # 5xx, whatever the body (load balancers answer HTML)
    TIMEOUT = "timeout"
    CONNECTION = "connection"  # refused, reset, truncated transfer
    INVALID_JSON = "invalid_json"  # a 200 whose body is not a complete JSON object
    RATE_SECOND = "rate_second"  # 429 with period "second" (or no period)
    RATE_DAY = "rate_day"  # 429 with period "day": stop until São Paulo midnight
    INVALID_TOKEN = "invalid_token"  # 401 invalid_token: one forced refresh, one retry
    UNAUTHORIZED = "unauthorized"  # any other 401 ("Empresa inativa"): the authorization is broken (ADR 008)
    INSUFFICIENT_SCOPE = "insufficient_scope"  # 403 insufficient_scope (401 before v328): broken too
    NOT_FOUND = "not_found"  # 404
    CLIENT_ERROR = "client_error"  # 400, other 403s, other 4xx


@dataclasses.dataclass(frozen=True)
class Rule:
    max_attempts: int  # attempts that may end in this outcome before it is raised (1 = never retried)
    wait_min_s: float = 0.0  # first backoff
    wait_max_s: float = 0.0  # cap of the exponential backoff
    multiplier: float = 2.0

    def wait(self, failures: int) -> float:
        """Backoff after the `failures`-th failure of this kind: exponential, jittered upwards, within bounds."""
        if self.wait_max_s <= 0:
            return 0.0
        base = min(self.wait_max_s, self.wait_min_s * self.multiplier ** max(0, failures - 1))
        return min(self.wait_max_s, base * random.uniform(1.0, 1.5))


_TRANSIENT = Rule(max_attempts=5, wait_min_s=0.5, wait_max_s=8.0)

POLICY: dict[Outcome, Rule] = {
    Outcome.SERVER_ERROR: _TRANSIENT,
    Outcome.TIMEOUT: _TRANSIENT,
    Outcome.CONNECTION: _TRANSIENT,
    Outcome.INVALID_JSON: _TRANSIENT,
    Outcome.RATE_SECOND: Rule(max_attempts=6, wait_min_s=1.0, wait_max_s=8.0),
    Outcome.INVALID_TOKEN: Rule(max_attempts=2),
    Outcome.RATE_DAY: Rule(max_attempts=1),
    Outcome.UNAUTHORIZED: Rule(max_attempts=1),
    Outcome.INSUFFICIENT_SCOPE: Rule(max_attempts=1),
    Outcome.NOT_FOUND: Rule(max_attempts=1),
    Outcome.CLIENT_ERROR: Rule(max_attempts=1),
}

# Whatever the outcomes, one get() makes at most this many requests and starts no retry after this many seconds.
MAX_ATTEMPTS_PER_CALL = 8
DEADLINE_S = 45.0


def scaled(policy: dict[Outcome, Rule], factor: float) -> dict[Outcome, Rule]:
    """The same table with every wait multiplied by factor (tests that exercise the retry counts quickly)."""
    return {k: dataclasses.replace(r, wait_min_s=r.wait_min_s * factor, wait_max_s=r.wait_max_s * factor)
            for k, r in policy.items()}
