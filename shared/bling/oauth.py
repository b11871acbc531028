"""Bling's token endpoint: one POST, no retries, guarded against the 20-calls-in-60-s IP block.

Both grants go through `request_token`: the code exchange (auth function) and the refresh (token store). It never
retries by itself: a refresh token and a code are single-use, so a retry after a lost answer could spend one twice;
the callers decide. Request (API-NOTES §2.2): POST form-urlencoded, `Authorization: Basic base64(id:secret)`,
`Accept: 1.0`, `enable-jwt: 1`.

A 4xx other than `invalid_grant` (invalid_client after the secret was regenerated, "Empresa inativa", a malformed
request) means the authorization or the configuration is broken: BlingAuthorizationBroken, parked by the handler,
never a PermanentError that would drop the work (ADR 008). Bling's IP block (403 "bloqueado") is transient: it
carries the hour Bling blocks for, so the token store's fleet-wide backoff waits that long.
"""
from __future__ import annotations

import base64
import collections
import hashlib
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from shared import log, secrets
from shared.bling import http as bling_http
from shared.bling.errors import BlingAuthorizationBroken, BlingError, BlingPermanentError, BlingRetryableError
from shared.config import Settings

_GUARD_WINDOW_S = 60.0


class BlingTokenEndpointBlocked(BlingRetryableError):
    """Bling blocked our IP at the token endpoint (20 calls in 60 s block it for an hour)."""

    retry_after_s = 3600.0


class FleetSlot(Protocol):
    """The fleet-wide cap a token call takes part in (shared.bling.fleet_limits.TokenCallBudget, ADR 012)."""

    def acquire(self) -> int: ...

    def count_error(self) -> None: ...


class OAuthClient:
    """The token endpoint as this process calls it: the client credentials, the HTTP session, and the per-process
    guard (the calls of the last 60 s). One per process, in the composition root (shared.deps.Deps): the guard
    protects the IP this process sends from, whichever account the call is for. `fleet`: the fleet-wide request
    and error caps when they are on (every token call holds a fleet slot and its error answers count)."""

    def __init__(self, settings: Settings, http_session: Any, fleet: FleetSlot | None = None):
        self._settings = settings
        self._session = http_session
        self._fleet = fleet
        self._calls: collections.deque[float] = collections.deque()  # monotonic seconds of recent calls
        self._calls_lock = threading.Lock()

    def client_credentials(self) -> tuple[str, str]:
        settings = self._settings
        client_id = secrets.resolve(settings.bling_client_id, settings.bling_client_id_secret, "BLING_CLIENT_ID")
        client_secret = secrets.resolve(settings.bling_client_secret, settings.bling_client_secret_secret,
                                        "BLING_CLIENT_SECRET")
        return client_id, client_secret

    def credentials_fingerprint(self) -> str:
        """A short hash of the client credentials (never the secret): the flag of ADR 008 records the one it
        failed with, so a process with other credentials (a new secret deployed) may try once. Missing
        credentials raise ConfigurationError."""
        client_id, client_secret = self.client_credentials()
        digest = hashlib.sha256(b"bling-client-credentials\0" + client_id.encode() + b"\0" + client_secret.encode())
        return digest.hexdigest()[:16]

    def _take_guard_slot(self) -> None:
        """Refuse a token call when this process already made `token_calls_per_min` in the last 60 s."""
        limit = self._settings.token_calls_per_min
        now = time.monotonic()
        with self._calls_lock:
            while self._calls and now - self._calls[0] >= _GUARD_WINDOW_S:
                self._calls.popleft()
            if len(self._calls) >= limit:
                retry_in = _GUARD_WINDOW_S - (now - self._calls[0])
                log.warning("refused a Bling token call: this process reached its per-minute cap",
                            event="bling_token_guard", limit_per_min=limit, retry_in_s=round(retry_in, 1))
                raise BlingRetryableError(0, "token_call_guard", "token call cap reached",
                                          f"more than {limit} token calls in 60 s in this process; retry later",
                                          path="/oauth/token")
            self._calls.append(now)

    def request_token(self, form: dict[str, str], deadline_s: float | None = None,
                      on_late: Callable[[dict[str, Any] | BaseException], None] | None = None) -> dict[str, Any]:
        """POST `form` to the token endpoint once; the validated token response (tokens registered as secrets).

        Raises BlingPermanentError for invalid_grant, BlingAuthorizationBroken for the other 4xx answers,
        BlingRetryableError for 5xx, 429, Bling's IP block, timeouts, connection errors, unreadable answers and the
        local guard, ConfigurationError when the client credentials are not configured.

        With `deadline_s`, the caller gets an answer or BlingRetryableError("token_call_deadline") within that many
        seconds whatever the network does (requests' timeouts are per phase, not total). The POST itself may still be
        answered later: then `on_late` receives that answer (the token response or the exception), because a refresh
        answered after we stopped waiting carries the only copy of the new single-use refresh token.
        """
        settings = self._settings
        client_id, client_secret = self.client_credentials()
        self._take_guard_slot()
        if self._fleet is not None:
            self._fleet.acquire()
        if deadline_s is None:
            return self._post(form, client_id, client_secret, settings.token_http_timeout_s)
        box: dict[str, Any] = {}
        lock = threading.Lock()
        # Per-phase timeouts of the late POST: it connects within the deadline and gets its answer within
        # `late_s`, so whoever waits for it (the lease, ADR 008) knows it is over after deadline_s + late_s.
        timeouts = (deadline_s, max(deadline_s, settings.token_lease_s / 2))

        def run() -> None:
            try:
                outcome: Any = self._post(form, client_id, client_secret, timeouts)
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller or to on_late
                outcome = exc
            with lock:
                box["outcome"] = outcome
                late = box.get("abandoned", False)
            if late and on_late is not None:
                on_late(outcome)

        worker = threading.Thread(target=run, name="bling-token-call", daemon=True)
        worker.start()
        worker.join(deadline_s)
        with lock:
            if "outcome" not in box:
                box["abandoned"] = True
                raise BlingRetryableError(0, "token_call_deadline", "token call outlived its deadline",
                                          f"no answer from the token endpoint within {deadline_s:.1f} s; a late answer "
                                          "is still stored", path="/oauth/token")
            outcome = box["outcome"]
        if isinstance(outcome, BaseException):
            raise outcome
        assert isinstance(outcome, dict), type(outcome)  # the worker stores a parsed token response or an exception
        return outcome

    def _post(self, form: dict[str, str], client_id: str, client_secret: str, timeout: Any) -> dict[str, Any]:
        import requests

        settings = self._settings
        basic = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode("ascii")
        headers = {"Authorization": f"Basic {basic}", "Accept": "1.0", "enable-jwt": "1",
                   "Content-Type": "application/x-www-form-urlencoded"}
        grant_type = form.get("grant_type", "")
        started = time.monotonic()
        status = 0
        try:
            response = self._session.post(settings.bling_token_url, data=form, headers=headers, timeout=timeout)
            status = response.status_code
            body = response.content
        except requests.RequestException as exc:
            kind = "timeout" if isinstance(exc, requests.Timeout) else "connection_error"
            raise BlingRetryableError(0, kind, type(exc).__name__, "token endpoint unreachable",
                                      path="/oauth/token") from None
        finally:
            if self._fleet is not None and (status == 0 or status >= 400):
                self._fleet.count_error()
            log.info("bling token request", event="bling_token_request", method="POST", path="/oauth/token",
                     grant_type=grant_type, status=status, duration_ms=round((time.monotonic() - started) * 1000))
        parsed = bling_http.parse_json(body)
        if status == 200 and isinstance(parsed, dict):
            return parse_token_response(parsed)
        error = bling_http.error_from_response(status, parsed, "/oauth/token")
        if status == 403 and _is_ip_block(error):
            raise error.as_kind(BlingTokenEndpointBlocked)
        if 400 <= status < 500 and status != 429 and error.error_type:
            if error.error_type == "invalid_grant":
                raise error.as_kind(BlingPermanentError)
            raise error.as_kind(BlingAuthorizationBroken)
        raise BlingRetryableError(status, error.error_type or "token_endpoint_error", error.error_message,
                                  error.description or "token endpoint answered unexpectedly", path="/oauth/token")


def _is_ip_block(error: BlingError) -> bool:
    """Bling's IP block is a 403 FORBIDDEN "Acesso bloqueado"; insufficient_scope and the like are not."""
    text = f"{error.error_message} {error.description}".lower()
    return error.error_type in ("FORBIDDEN", "") and ("bloque" in text or "block" in text)


def parse_token_response(body: dict[str, Any]) -> dict[str, Any]:
    """{access_token, refresh_token, expires_in (int), scope, token_type}, with both tokens registered as secrets."""
    access, refresh = body.get("access_token"), body.get("refresh_token")
    for value in (access, refresh):
        if isinstance(value, str):
            log.register_secret(value)
    try:
        expires_in = int(body.get("expires_in"))  # type: ignore[arg-type]  # ValueError/TypeError: caught below
    except (TypeError, ValueError):
        expires_in = 0
    if not isinstance(access, str) or not isinstance(refresh, str) or not access or not refresh or expires_in <= 0:
        raise BlingRetryableError(200, "invalid_token_response", "token response incomplete",
                                  "the token endpoint answered 200 without access_token/refresh_token/expires_in",
                                  path="/oauth/token")
    return {"access_token": access, "refresh_token": refresh, "expires_in": expires_in,
            "scope": str(body.get("scope") or ""), "token_type": str(body.get("token_type") or "Bearer")}
