"""The auth function (HTTP): the one-time OAuth consent with Bling, and a status page.

  GET /start (or / with no parameters)  new random state, saved for 10 minutes → 302 to Bling's authorize URL
  GET /callback?code&state              exchange the code once, store the pair, publish the parked messages
                                        again (shared.parking) → a plain success page
  GET /callback?error&error_description Bling's refusal (e.g. access_denied) → a plain error page, 400
  GET /status                           the token store's status as JSON (never a token)

Bling revokes the user when a code is exchanged twice (API-NOTES §4.17), so the callback first consumes its state
and records the code in ONE atomic Firestore commit (state marked used + `<prefix>_oauth_codes/<sha256(code)>`
created; it fails as a whole if either was already there), and only then calls the token endpoint. A replayed or
double-submitted callback therefore never reaches the token endpoint again.
"""
from __future__ import annotations

import datetime
import hashlib
import html
import json
import re
import secrets
import time
import urllib.parse

import functions_framework

from shared import firestore_client, log, parking
from shared.bling import oauth
from shared.bling.errors import BlingError
from shared.bling.token_store import get_token_store
from shared.config import get_settings

FUNCTION = "auth"
_UTC = datetime.timezone.utc
_STATE_PATTERN = re.compile(r"^[A-Za-z0-9_-]{16,128}$")
_CODE_RECORD_TTL = datetime.timedelta(days=1)


@functions_framework.http
def auth_http(request):
    with log.bind(function=FUNCTION):
        route = _route(request.path, bool(request.args))
        log.info(f"auth request {route or request.path}", event="auth_request", route=route or "unknown",
                 method=request.method)
        if route == "start":
            return _start()
        if route == "callback":
            return _callback(request.args)
        if route == "status":
            return _json(get_token_store().status())
        return _page(404, "Not found", "This address is not part of the Bling authorization flow.",
                     link=("start", "Authorize Bling"))


def _route(path: str, has_args: bool) -> str:
    """The last path segment decides, so the function works behind any URL prefix."""
    last = path.rstrip("/").rsplit("/", 1)[-1]
    if last in ("start", "callback", "status"):
        return last
    if last in ("", FUNCTION) or last.endswith(f"-{FUNCTION}"):  # the bare function URL (e.g. .../bling-auth)
        return "callback" if has_args else "start"  # Bling's registered redirect URI may be the bare URL
    return ""


# ---------------------------------------------------------------------------------------------------- /start


def _start():
    settings = get_settings()
    client_id, _ = oauth.client_credentials()
    state = secrets.token_urlsafe(32)
    now = datetime.datetime.now(tz=_UTC)
    _states().document(state).create({
        "created_at": now, "expire_at": now + datetime.timedelta(seconds=settings.oauth_state_ttl_s),
        "used": False,
    })
    query = urllib.parse.urlencode({"response_type": "code", "client_id": client_id, "state": state})
    sep = "&" if "?" in settings.bling_authorize_url else "?"
    log.info("redirecting to Bling's consent page", event="auth_start", state_expires_in_s=settings.oauth_state_ttl_s)
    return "", 302, {"Location": f"{settings.bling_authorize_url}{sep}{query}", "Cache-Control": "no-store"}


# ---------------------------------------------------------------------------------------------------- /callback


def _callback(args):
    if args.get("error"):
        error, description = args.get("error", ""), args.get("error_description", "")
        log.warning("Bling did not authorize the app", event="auth_refused_by_bling", bling_error=error,
                    bling_error_description=description)
        return _page(400, "Bling did not authorize the app",
                     f"Bling answered: {error}" + (f" ({description})" if description else ""),
                     link=("start", "Try again"))
    code, state = args.get("code", ""), args.get("state", "")
    if not code or not state:
        log.warning("callback without code or state", event="auth_callback_refused", reason="missing_parameters")
        return _page(400, "Authorization failed", "The callback is missing its code or state.",
                     link=("start", "Start again"))
    refusal = _consume_state(state, code)
    if refusal:
        log.warning(f"callback refused: {refusal}", event="auth_callback_refused", reason=refusal)
        return _page(400, "Authorization failed", f"This authorization link cannot be used: {refusal}.",
                     link=("start", "Start again"))
    requested_at = time.time()
    try:
        token_response = oauth.request_token({"grant_type": "authorization_code", "code": code})
    except BlingError as exc:
        log.error(f"Bling refused the authorization code: {exc}", event="auth_code_exchange_failed",
                  **exc.log_fields())
        return _page(502, "Authorization failed",
                     f"Bling refused the authorization code ({exc.error_type or exc.status}: "
                     f"{exc.description or exc.error_message}). Codes are valid for one minute and only once.",
                     link=("start", "Start again"))
    get_token_store().store_authorization(token_response, requested_at=requested_at)
    log.info("Bling authorization stored", event="auth_authorized")
    _release_parked_work()
    return _page(200, "Bling is authorized",
                 "The pipeline can now read invoices, contacts and products. You may close this page.",
                 link=("status", "Status"))


def _release_parked_work() -> None:
    """Work parked while the authorization was missing or revoked resumes now (shared.parking)."""
    try:
        parking.release_all()
    except Exception as exc:  # noqa: BLE001 - the authorization is stored; the daily run releases them too
        log.warning(f"could not release parked messages now; the next daily run will: {exc}",
                    event="auth_release_parked_failed", error_type=type(exc).__name__)


def _consume_state(state: str, code: str) -> str:
    """"" when the state was live and unused and is now consumed with the code recorded; otherwise why not."""
    from google.api_core import exceptions as gexc

    if not _STATE_PATTERN.match(state):
        return "unknown state"
    ref = _states().document(state)
    snap = ref.get()
    if not snap.exists:
        return "unknown state"
    data = snap.to_dict() or {}
    if data.get("used"):
        return "state already used"
    expire_at = data.get("expire_at")
    now = datetime.datetime.now(tz=_UTC)
    if not isinstance(expire_at, datetime.datetime) or expire_at <= now:
        return "state expired"
    code_id = hashlib.sha256(code.encode()).hexdigest()
    client = firestore_client.client()
    batch = client.batch()
    batch.update(ref, {"used": True, "used_at": now, "code_sha256": code_id},
                 option=client.write_option(last_update_time=snap.update_time))
    batch.create(_codes().document(code_id), {"state_used_at": now, "expire_at": now + _CODE_RECORD_TTL})
    try:
        batch.commit()
    except (gexc.FailedPrecondition, gexc.Conflict, gexc.AlreadyExists):
        return "state or code already used"
    return ""


def _states():
    return firestore_client.collection("oauth_states")


def _codes():
    return firestore_client.collection("oauth_codes")


# ---------------------------------------------------------------------------------------------------- pages


def _json(payload: dict):
    return json.dumps(payload, default=str), 200, {"Content-Type": "application/json", "Cache-Control": "no-store"}


def _link(route: str) -> str:
    """Absolute when AUTH_PUBLIC_URL is known (the function may sit under a path prefix), else relative."""
    public = get_settings().auth_public_url.rstrip("/")
    return f"{public}/{route}" if public.startswith(("http://", "https://")) else route


def _page(status: int, title: str, text: str, link: tuple[str, str] | None = None):
    link_html = f'<p><a href="{html.escape(_link(link[0]))}">{html.escape(link[1])}</a></p>' if link else ""
    body = (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title></head>"
            f"<body><h1>{html.escape(title)}</h1><p>{html.escape(text)}</p>{link_html}</body></html>")
    return body, status, {"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store"}
