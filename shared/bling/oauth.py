"""Bling's token endpoint: one POST, no retries, guarded against the 20-calls-in-60-s IP block.

Both grants go through `request_token`: the code exchange (auth function) and the refresh (token store). It never
retries by itself: a refresh token and a code are single-use, so a retry after a lost answer could spend one twice;
the callers decide. Request (API-NOTES §2.2): POST form-urlencoded, `Authorization: Basic base64(id:secret)`,
`Accept: 1.0`, `enable-jwt: 1`.
"""
from __future__ import annotations

import base64
import collections
import threading
import time
from typing import Any

from shared import log, secrets
from shared.bling import client as bling_client
from shared.bling.errors import BlingError, BlingPermanentError, BlingRetryableError
from shared.config import get_settings

# Process-wide record of token-endpoint calls (monotonic seconds), for the per-minute guard.
_calls: collections.deque[float] = collections.deque()
_calls_lock = threading.Lock()
_GUARD_WINDOW_S = 60.0


def client_credentials() -> tuple[str, str]:
    settings = get_settings()
    client_id = secrets.resolve(settings.bling_client_id, settings.bling_client_id_secret, "BLING_CLIENT_ID")
    client_secret = secrets.resolve(settings.bling_client_secret, settings.bling_client_secret_secret,
                                    "BLING_CLIENT_SECRET")
    return client_id, client_secret


def _take_guard_slot() -> None:
    """Refuse a token call when this process already made `token_calls_per_min` in the last 60 s."""
    limit = get_settings().token_calls_per_min
    now = time.monotonic()
    with _calls_lock:
        while _calls and now - _calls[0] >= _GUARD_WINDOW_S:
            _calls.popleft()
        if len(_calls) >= limit:
            retry_in = _GUARD_WINDOW_S - (now - _calls[0])
            log.warning("refused a Bling token call: this process reached its per-minute cap",
                        event="bling_token_guard", limit_per_min=limit, retry_in_s=round(retry_in, 1))
            raise BlingRetryableError(0, "token_call_guard", "token call cap reached",
                                      f"more than {limit} token calls in 60 s in this process; retry later",
                                      path="/oauth/token")
        _calls.append(now)


def reset_guard() -> None:
    with _calls_lock:
        _calls.clear()


def request_token(form: dict[str, str]) -> dict[str, Any]:
    """POST `form` to the token endpoint once; the validated token response (tokens registered as secrets).

    Raises BlingPermanentError for 4xx answers (error_type "invalid_grant", "invalid_client", "VALIDATION_ERROR"
    ...), BlingRetryableError for 5xx, 429, timeouts, connection errors, unreadable answers and the local guard.
    """
    import requests

    settings = get_settings()
    client_id, client_secret = client_credentials()
    basic = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode("ascii")
    headers = {"Authorization": f"Basic {basic}", "Accept": "1.0", "enable-jwt": "1",
               "Content-Type": "application/x-www-form-urlencoded"}
    grant_type = form.get("grant_type", "")
    _take_guard_slot()
    started = time.monotonic()
    status = 0
    try:
        response = bling_client.session().post(settings.bling_token_url, data=form, headers=headers,
                                               timeout=settings.token_http_timeout_s)
        status = response.status_code
        body = response.content
    except requests.RequestException as exc:
        kind = "timeout" if isinstance(exc, requests.Timeout) else "connection_error"
        raise BlingRetryableError(0, kind, type(exc).__name__, "token endpoint unreachable",
                                  path="/oauth/token") from None
    finally:
        log.info("bling token request", event="bling_token_request", method="POST", path="/oauth/token",
                 grant_type=grant_type, status=status, duration_ms=round((time.monotonic() - started) * 1000))
    parsed = bling_client.parse_json(body)
    if status == 200 and isinstance(parsed, dict):
        return parse_token_response(parsed)
    error = bling_client.error_from_response(status, parsed, "/oauth/token")
    if isinstance(error, BlingError) and 400 <= status < 500 and status != 429:
        raise BlingPermanentError(status, error.error_type, error.error_message, error.description,
                                  error.fields, "/oauth/token")
    raise BlingRetryableError(status, error.error_type or "token_endpoint_error", error.error_message,
                              error.description or "token endpoint answered unexpectedly", path="/oauth/token")


def parse_token_response(body: dict[str, Any]) -> dict[str, Any]:
    """{access_token, refresh_token, expires_in (int), scope, token_type}, with both tokens registered as secrets."""
    access, refresh = body.get("access_token"), body.get("refresh_token")
    for value in (access, refresh):
        if isinstance(value, str):
            log.register_secret(value)
    try:
        expires_in = int(body.get("expires_in"))
    except (TypeError, ValueError):
        expires_in = 0
    if not isinstance(access, str) or not isinstance(refresh, str) or not access or not refresh or expires_in <= 0:
        raise BlingRetryableError(200, "invalid_token_response", "token response incomplete",
                                  "the token endpoint answered 200 without access_token/refresh_token/expires_in",
                                  path="/oauth/token")
    return {"access_token": access, "refresh_token": refresh, "expires_in": expires_in,
            "scope": str(body.get("scope") or ""), "token_type": str(body.get("token_type") or "Bearer")}
