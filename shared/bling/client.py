"""The Bling API v3 client: GET with the account rate budget, the shared OAuth token and the retry table.

Every HTTP request (first try and every retry) takes a slot from shared.bling.rate_budget, sends
`Authorization: Bearer <token>` and `enable-jwt: 1`, and writes one JSON log line (event "bling_request": method,
path without query string, status, duration_ms, attempt). Bodies are parsed with parse_float=Decimal, so amounts
stay exact. Errors are raised as the classes of shared.bling.errors; which ones are retried here, how often and how
long is the table in shared.bling.retry_policy.

A 429 with period "day" is remembered in Firestore (`<prefix>_rate_state/<account>|daily_limit`, DailyLimit) until the
next midnight in São Paulo, so every instance stops without calling Bling; count_calls() counts the requests of a unit
of work.
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import datetime
import threading
import time
import zoneinfo
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

import tenacity

from shared import log, topology
from shared.bling.api import Params
from shared.bling.errors import BlingDailyLimit, BlingError, BlingNotFound, BlingPermanentError, BlingRetryableError
from shared.bling.http import error_from_response, parse_json
from shared.bling.retry_policy import DEADLINE_S, MAX_ATTEMPTS_PER_CALL, POLICY, Outcome, Rule
from shared.bling.token_store import TokenStore

# ---------------------------------------------------------------------------------------------------- call counting


@dataclasses.dataclass
class CallCount:
    requests: int = 0  # HTTP requests sent, retries included
    throttled: int = 0  # 429 answers received


_counters: contextvars.ContextVar[tuple[CallCount, ...]] = contextvars.ContextVar("bling_call_counters", default=())


@contextlib.contextmanager
def count_calls() -> Iterator[CallCount]:
    """Count the Bling requests made inside this block, in this thread/context (blocks may nest)."""
    counter = CallCount()
    token = _counters.set((*_counters.get(), counter))
    try:
        yield counter
    finally:
        _counters.reset(token)


def _count(throttled: bool) -> None:
    for counter in _counters.get():
        counter.requests += 1
        counter.throttled += int(throttled)


# ---------------------------------------------------------------------------------------------------- HTTP
# The session and the error-body parsing live in shared.bling.http, shared with the token endpoint (oauth.py).

def classify(status: int, parsed: Any) -> Outcome:
    """Which row of the retry table an answer falls in."""
    if 200 <= status < 300:
        return Outcome.OK if isinstance(parsed, dict) or (status == 204) else Outcome.INVALID_JSON
    error = parsed.get("error") if isinstance(parsed, dict) else None
    error = error if isinstance(error, dict) else {}
    if status == 429:
        return Outcome.RATE_DAY if str(error.get("period", "")).lower() == "day" else Outcome.RATE_SECOND
    if status == 401:
        return Outcome.INVALID_TOKEN if error.get("type") == "invalid_token" else Outcome.UNAUTHORIZED
    if status == 403 and error.get("type") == "insufficient_scope":
        return Outcome.INSUFFICIENT_SCOPE
    if status == 404:
        return Outcome.NOT_FOUND
    if status >= 500:
        return Outcome.SERVER_ERROR
    return Outcome.CLIENT_ERROR


def _raise_for(outcome: Outcome, status: int, parsed: Any, path: str) -> BlingError:
    base = error_from_response(status, parsed, path)
    if outcome is Outcome.NOT_FOUND:
        return base.as_kind(BlingNotFound)
    if outcome is Outcome.RATE_DAY:
        return base.as_kind(BlingDailyLimit)
    if outcome is Outcome.CLIENT_ERROR:
        return base.as_kind(BlingPermanentError)
    if outcome is Outcome.INVALID_JSON:
        return BlingRetryableError(status, "invalid_json", "unreadable body",
                                   "the answer was not a complete JSON object (truncated?)", path=path)
    return base.as_kind(BlingRetryableError)


# ---------------------------------------------------------------------------------------------------- daily limit

DAILY_LIMIT_DOC = "daily_limit"  # <account>|daily_limit; a single-account install wrote it bare
_DAILY_RECHECK_S = 30.0  # how long an instance trusts its last read of the daily-limit document


class DailyLimit:
    """One account's spent daily quota (Bling's 120,000 requests/day are per account): the Firestore document
    `<prefix>_rate_state/<account>|daily_limit` (every instance stops calling for that account), and this
    process's last read of it (trusted for _DAILY_RECHECK_S, so a call costs no read)."""

    def __init__(self, rate_state: Any, timezone: str, account: str):
        self._ref = rate_state.document(f"{account}|{DAILY_LIMIT_DOC}")
        self._tz = zoneinfo.ZoneInfo(timezone)
        self._lock = threading.Lock()
        self._until, self._read_at = 0.0, -1e9

    def until(self) -> float:
        """Until when (epoch seconds) the quota is known spent; 0 when it is not."""
        now = time.monotonic()
        with self._lock:
            if now - self._read_at < _DAILY_RECHECK_S:
                return self._until
        snap = self._ref.get()
        until = snap.get("until").timestamp() if snap.exists and snap.get("until") else 0.0
        with self._lock:
            self._until, self._read_at = until, now
        return until

    def remember(self, error: BlingDailyLimit) -> None:
        until = self._next_reset(time.time())
        when = datetime.datetime.fromtimestamp(until, tz=datetime.UTC)
        self._ref.set({"until": when, "recorded_at": datetime.datetime.now(tz=datetime.UTC),
                       "description": error.description,
                       "expire_at": topology.RATE_STATE.expire_at(datetime.datetime.now(tz=datetime.UTC))})
        with self._lock:
            self._until, self._read_at = until, time.monotonic()
        log.warning("Bling's daily request quota is spent; every instance stops calling Bling until the reset",
                    event="bling_daily_limit", until=when.isoformat())

    def _next_reset(self, now: float) -> float:
        """The next midnight in São Paulo; if Bling still says "day" shortly after midnight, try again in an hour."""
        local = datetime.datetime.fromtimestamp(now, tz=self._tz)
        midnight = datetime.datetime.combine(local.date() + datetime.timedelta(days=1), datetime.time(),
                                             tzinfo=self._tz)
        until = midnight.timestamp()
        return until if until - now <= 20 * 3600 else now + 3600


# ---------------------------------------------------------------------------------------------------- client


class _Retry(Exception):
    """One attempt ended in a retryable outcome; tenacity decides whether there is another."""

    def __init__(self, outcome: Outcome, error: BlingError):
        super().__init__(str(error))
        self.outcome = outcome
        self.error = error


def _retried(retry_state: tenacity.RetryCallState) -> _Retry:
    """The _Retry the last attempt raised (tenacity calls stop/wait only after one did)."""
    error = retry_state.outcome.exception() if retry_state.outcome else None
    assert isinstance(error, _Retry), error
    return error


@dataclasses.dataclass
class _Call:
    path: str
    started: float
    attempts: int = 0
    failures: dict[Outcome, int] = dataclasses.field(default_factory=dict)
    refreshed: bool = False
    retry_after_s: float = 0.0  # from a Retry-After header, when the server sends one


class RateBudget(Protocol):
    """Takes one slot of the account's request budget before each HTTP request (shared.bling.rate_budget)."""

    def acquire(self) -> None: ...


class BlingClient:
    def __init__(self, *, token_store: TokenStore, budget: RateBudget, daily_limit: DailyLimit, base_url: str,
                 http: Any, timeout_s: float, policy: Mapping[Outcome, Rule] | None = None):
        """One account's client; its composition root (shared.deps.Deps.account) passes every part."""
        self._tokens = token_store
        self._budget = budget
        self._daily = daily_limit
        self._policy = policy or POLICY
        self._http = http
        self._base = base_url
        self._timeout = timeout_s

    def get(self, path: str, params: Params = None) -> dict[str, Any]:
        """GET base + path; the parsed JSON object. Raises the classes of shared.bling.errors."""
        until = self._daily.until()
        if until > time.time():
            raise BlingDailyLimit(429, "TOO_MANY_REQUESTS", "daily limit remembered",
                                  "Bling's daily quota was spent; waiting until "
                                  f"{datetime.datetime.fromtimestamp(until, tz=datetime.UTC).isoformat()}",
                                  path=path)
        call = _Call(path=path, started=time.monotonic())
        retrying = tenacity.Retrying(retry=tenacity.retry_if_exception_type(_Retry), stop=self._stop_for(call),
                                     wait=self._wait_for(call), reraise=True)
        try:
            return retrying(self._attempt, call, params)
        except _Retry as exhausted:
            raise exhausted.error from None

    # -- tenacity hooks: the retry table decides

    def _stop_for(self, call: _Call) -> Callable[[tenacity.RetryCallState], bool]:
        def stop(retry_state: tenacity.RetryCallState) -> bool:
            outcome = _retried(retry_state).outcome
            rule = self._policy[outcome]
            if call.failures[outcome] >= rule.max_attempts or call.attempts >= MAX_ATTEMPTS_PER_CALL:
                return True
            return time.monotonic() - call.started + rule.wait_min_s > DEADLINE_S

        return stop

    def _wait_for(self, call: _Call) -> Callable[[tenacity.RetryCallState], float]:
        def wait(retry_state: tenacity.RetryCallState) -> float:
            outcome = _retried(retry_state).outcome
            # Bling documents no Retry-After; when a server sends one anyway, wait at least that long (capped so
            # one call stays within its deadline), never less than our own backoff.
            backoff = self._policy[outcome].wait(call.failures[outcome])
            return max(backoff, min(call.retry_after_s, _MAX_RETRY_AFTER_S))

        return wait

    # -- one HTTP request

    def _attempt(self, call: _Call, params: Params) -> dict[str, Any]:
        import requests

        token = self._tokens.get_valid_access_token()
        self._budget.acquire()
        call.attempts += 1
        status, parsed, outcome = 0, None, Outcome.CONNECTION
        started = time.monotonic()
        try:
            response = self._http.get(self._base + call.path, params=params, timeout=self._timeout,
                                      headers={"Authorization": f"Bearer {token}", "enable-jwt": "1",
                                               "Accept": "application/json"})
            status = response.status_code
            call.retry_after_s = _retry_after_seconds(response.headers.get("Retry-After"))
            parsed = parse_json(response.content)
            outcome = classify(status, parsed)
        except requests.Timeout:
            outcome = Outcome.TIMEOUT
        except requests.RequestException:
            outcome = Outcome.CONNECTION
        finally:
            _count(throttled=status == 429)
            fields = {"event": "bling_request", "method": "GET", "path": call.path.split("?", 1)[0], "status": status,
                      "duration_ms": round((time.monotonic() - started) * 1000), "attempt": call.attempts}
            if outcome is Outcome.OK:
                log.info("bling request", **fields)
            else:
                log.warning(f"bling request failed: {outcome.value}", outcome=outcome.value, **fields)
        if outcome is Outcome.OK:
            return parsed if isinstance(parsed, dict) else {}
        call.failures[outcome] = call.failures.get(outcome, 0) + 1
        if outcome in (Outcome.TIMEOUT, Outcome.CONNECTION):
            error: BlingError = BlingRetryableError(0, outcome.value, "no answer",
                                                    "timeout" if outcome is Outcome.TIMEOUT else
                                                    "connection failed or answer cut", path=call.path)
        else:
            error = _raise_for(outcome, status, parsed, call.path)
        if outcome is Outcome.RATE_DAY:
            self._daily.remember(error)  # type: ignore[arg-type]
            raise error
        if outcome in (Outcome.UNAUTHORIZED, Outcome.INSUFFICIENT_SCOPE):
            # Bling refuses the authorization itself, not this record: flag the fleet and park (ADR 008).
            self._tokens.mark_authorization_broken(token, error)
        if outcome is Outcome.INVALID_TOKEN:
            if call.refreshed:
                # A token fresh from the store was refused too: keep the work (retryable), do not loop on refreshes.
                raise error.as_kind(BlingRetryableError) from None
            call.refreshed = True
            self._tokens.refresh_after_rejection(token)
        if self._policy[outcome].max_attempts <= 1:
            raise error
        raise _Retry(outcome, error)


_MAX_RETRY_AFTER_S = 20.0


def _retry_after_seconds(value: str | None) -> float:
    """Retry-After in seconds (the HTTP-date form is ignored: clocks differ and Bling does not send it)."""
    try:
        return max(0.0, float(value)) if value else 0.0
    except ValueError:
        return 0.0
