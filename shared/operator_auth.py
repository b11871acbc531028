"""Who may start an authorization and read its status: the operator, holding the admin key (docs/decisions/007).

The auth function must stay publicly invocable (Bling sends the user's browser to /callback), so Cloud Run IAM
cannot guard /start and /status; the function checks an admin key itself. The key comes from Secret Manager
(`bling-auth-admin-key`) as env AUTH_ADMIN_KEY. It is read from an `Authorization: Bearer` header (curl) or the
`admin_key` field of a POSTed form (a browser), never from the URL: query strings end up in request logs and
browser history. It is compared in constant time and registered with the logger so it can never be printed.

Guessing is slowed per instance: after FAILURES_PER_WINDOW wrong keys in WINDOW_S seconds every key, the right
one included, is refused until the oldest failure leaves the window. Refusing the right key too is deliberate:
otherwise the limit would only delay, never stop, a guesser; the operator waits at most a minute.
"""
from __future__ import annotations

import collections
import dataclasses
import hmac
import threading
import time
from typing import Any

from shared import log, secrets

FAILURES_PER_WINDOW = 10
WINDOW_S = 60.0
# A key shorter than this is treated as not configured: it could be guessed despite the rate limit.
MIN_KEY_CHARS = 16
FORM_FIELD = "admin_key"

@dataclasses.dataclass(frozen=True)
class Verdict:
    """ok, or why not: "not_configured", "no_key", "wrong_key", "locked" (then retry_after_s)."""
    ok: bool
    reason: str = ""
    retry_after_s: int = 0


def configured_key_problem(key: str) -> str:
    """"" when AUTH_ADMIN_KEY (`key`, Settings.auth_admin_key) is usable, else what is wrong with it (never its
    value)."""
    if not key:
        return "AUTH_ADMIN_KEY is not configured"
    if len(key) < MIN_KEY_CHARS:
        return f"AUTH_ADMIN_KEY is shorter than {MIN_KEY_CHARS} characters"
    return ""


def presented_key(request: Any) -> str:
    """The key in the Authorization header (Bearer) or, for a POST, the form field; never the query string."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return str(value).strip()
    if request.method == "POST":
        return (request.form.get(FORM_FIELD) or "").strip()
    return ""


class KeyGuard:
    """The admin-key check of one auth-function instance, with its recent wrong keys (the per-instance lock-out).
    Built once per process, beside the composition root (functions/auth/main.py)."""

    def __init__(self, configured: str):
        self._configured = configured  # Settings.auth_admin_key
        self._failures: collections.deque[float] = collections.deque()
        self._lock = threading.Lock()
        self._lock_logged_until = 0.0

    def problem(self) -> str:
        return configured_key_problem(self._configured)

    def check(self, presented: str) -> Verdict:
        if self.problem():
            return Verdict(False, "not_configured")
        if not presented:
            return Verdict(False, "no_key")
        expected = secrets.resolve(self._configured, "", "AUTH_ADMIN_KEY")  # registers it with the logger
        now = time.monotonic()
        with self._lock:
            while self._failures and now - self._failures[0] >= WINDOW_S:
                self._failures.popleft()
            if len(self._failures) >= FAILURES_PER_WINDOW:
                return self._locked(now)
            if hmac.compare_digest(presented.encode(), expected.encode()):
                return Verdict(True)
            self._failures.append(now)
        return Verdict(False, "wrong_key")

    def _locked(self, now: float) -> Verdict:
        """Called with the lock held; logs once per lock period, not once per refused attempt."""
        until = self._failures[0] + WINDOW_S
        if now >= self._lock_logged_until:
            self._lock_logged_until = until
            log.warning(f"admin key refused {len(self._failures)} times in {WINDOW_S:.0f} s: every key is refused "
                        f"for {until - now:.0f} s on this instance", event="auth_admin_key_locked",
                        failures=len(self._failures), retry_in_s=round(until - now, 1))
        return Verdict(False, "locked", retry_after_s=max(1, int(until - now + 0.999)))
