"""The auth function (HTTP): the one-time OAuth consent with Bling, and a status page.

It must be publicly invocable (Bling sends the user's browser to /callback), so it guards itself (ADR 007):
/start and /status are for the operator only, who presents the admin key (env AUTH_ADMIN_KEY, from Secret Manager)
in an `Authorization: Bearer` header or a POSTed form field `admin_key`, never in the URL.

  GET  /start (or / with no parameters)  no key: 401 with the operator's form; no AUTH_ADMIN_KEY: 503
  POST /start  admin_key=… account=…     account: the slug of the Bling company to connect (issue 14; form field or
                                         query, validated by shared.accounts: a bad one is a 400 page); a new slug
                                         is registered `pending`. Without it: the one account of the deployment;
                                         with none or several it is required (400).
                                         A working authorization exists for it and no confirm=replace: 409 showing
                                         what would be replaced; otherwise a new single-use state for that
                                         account, saved for OAUTH_STATE_TTL_S and bound to this browser by an
                                         HttpOnly cookie (shared.oauth_state) → 302 to Bling's authorize URL
  GET  /callback?code&state              only with that browser's cookie: exchange the code once, store the pair
                                         for the account saved with the state (never one named in the URL), make
                                         it active, publish the parked messages again (shared.parking) → a
                                         success page; anything else is refused before the token endpoint is called
  GET  /callback?error&error_description Bling's refusal (e.g. access_denied) → a plain error page, 400
  GET  /status (Bearer) or POST /status  every account as JSON (shared.account_status: the keys; never a token);
                                         with account=…: that account's entry only
"""
from __future__ import annotations

import html
import json
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import functions_framework

from shared import account_status, log, oauth_state, operator_auth, parking, topology
from shared.account_registry import AccountStatus
from shared.accounts import parse_account_id
from shared.bling.errors import BlingError
from shared.deps import Deps

FUNCTION = "auth"
CONFIRM_FIELD, CONFIRM_VALUE = "confirm", "replace"
ACCOUNT_FIELD = "account"
_LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")

deps = Deps.from_environment()  # the composition root: once per process (ADR 010)
key_guard = operator_auth.KeyGuard(deps.settings.auth_admin_key)  # this instance's wrong-key lock-out


@functions_framework.http
def auth_http(request: Any) -> Any:
    with log.bind(function=FUNCTION):
        route = _route(request.path, bool(request.args))
        log.info(f"auth request {route or request.path}", event="auth_request", route=route or "unknown",
                 method=request.method)
        if route == "start":
            return _operator_only(request, "start", _start)
        if route == "callback":
            return _callback(request)
        if route == "status":
            return _operator_only(request, "status", _status)
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


# ---------------------------------------------------------------------------------------------------- the operator


def _operator_only(request: Any, route: str, handler: Callable[[Any], Any]) -> Any:
    """handler(request) if the request carries the admin key; otherwise the refusal page (never the content)."""
    if operator_auth.FORM_FIELD in request.args:
        log.warning("refused an admin key in the URL", event="auth_admin_key_refused", route=route, reason="in_url")
        return _page(400, "The admin key is never accepted in a URL",
                     "URLs end up in logs and browser history. Submit the key with the form or an "
                     "Authorization: Bearer header; if this was the real key, rotate it (docs/RUNBOOK.md).",
                     form=route)
    verdict = key_guard.check(operator_auth.presented_key(request))
    if verdict.ok:
        try:
            return handler(request)
        except _AccountRefused as exc:
            log.warning(f"auth /{route} refused: {exc}", event="auth_account_refused", route=route)
            return _page(400, "Which account?", str(exc), form=route)
    if verdict.reason == "not_configured":
        problem = key_guard.problem()
        log.error(f"auth /{route} refused: {problem}; set the Secret Manager secret bling-auth-admin-key",
                  event="auth_admin_key_missing", route=route)
        return _page(503, "The auth function has no admin key",
                     f"{problem}, so nobody can start an authorization or read its status. Set the Secret Manager "
                     "secret bling-auth-admin-key (env AUTH_ADMIN_KEY) and redeploy.")
    if verdict.reason == "locked":
        body, status, headers = _page(429, "Too many wrong admin keys",
                                      f"Try again in {verdict.retry_after_s} s.")
        return body, status, {**headers, "Retry-After": str(verdict.retry_after_s)}
    if verdict.reason == "wrong_key":
        log.warning(f"auth /{route} refused: wrong admin key", event="auth_admin_key_refused", route=route,
                    reason="wrong_key")
    text = ("That is not the admin key." if verdict.reason == "wrong_key" else
            "Only the operator may do this: enter the admin key (Secret Manager secret bling-auth-admin-key).")
    body, status, headers = _page(401, "Admin key required", text, form=route, account=_form_account(request))
    return body, status, {**headers, "WWW-Authenticate": 'Bearer realm="bling-auth"'}


# ---------------------------------------------------------------------------------------------------- accounts


class _AccountRefused(ValueError):
    """The request names no usable account: a 400 page saying what to send."""


def _named_account(request: Any) -> str | None:
    """The account the request names (POSTed field or query `account`), validated; None when it names none."""
    value = request.form.get(ACCOUNT_FIELD) or request.args.get(ACCOUNT_FIELD) or ""
    if not value:
        return None
    try:
        return parse_account_id(value)
    except ValueError as exc:
        raise _AccountRefused(f"{exc}.") from exc


def _form_account(request: Any) -> str:
    """The account to repeat in a key form (a browser's GET /start?account=…), or "" if it is not a slug."""
    try:
        return _named_account(request) or ""
    except _AccountRefused:
        return ""


def _start_account(request: Any) -> str:
    """The account /start authorizes: the named one (registered pending if new), else the deployment's only one."""
    named = _named_account(request)
    if named:
        deps.accounts.register(named)
        return named
    known = sorted(a for a, r in deps.accounts.all(fresh=True).items() if r.status is not AccountStatus.REMOVED)
    if len(known) == 1:
        return known[0]
    served = f"serves {len(known)} accounts ({', '.join(known)})" if known else "has no account yet"
    raise _AccountRefused(f"This deployment {served}: name the account this authorization connects (field or "
                          f"query parameter {ACCOUNT_FIELD}, e.g. /start?{ACCOUNT_FIELD}=lojas-stilli: lowercase "
                          "letters, digits and hyphens).")


def _status(request: Any) -> Any:
    named = _named_account(request)
    listed, unattributed = account_status.entries(deps)
    if named:
        match = [e for e in listed if e["account"] == named]
        if not match:
            return _page(404, "Unknown account", f"No account {named} is connected to this deployment.")
        return _json(match[0])
    payload: dict[str, Any] = {"accounts": listed, "account_count": len(listed),
                               "parked_total": sum(e["parked"] for e in listed) + unattributed,
                               "parked_without_account": unattributed}
    if len(listed) == 1:  # one account: its fields at the top level too, as before accounts (stable keys)
        payload = {**listed[0], **payload}
    elif not listed:  # nothing connected: what a single-account deployment without a token showed, and what to do
        payload.update(token_stored=False, reauth_required=True, authorized=False,
                       reauthorize_url=account_status.start_url(deps, ""),
                       action_required=f"connect an account: /start?{ACCOUNT_FIELD}=<slug>")
    return _json(payload)


# ---------------------------------------------------------------------------------------------------- /start


def _start(request: Any) -> Any:
    account = _start_account(request)
    with log.bind(account=account):
        return _start_for(request, account)


def _start_for(request: Any, account: str) -> Any:
    status = deps.account(account).token_store.status()
    if not status["reauth_required"] and request.form.get(CONFIRM_FIELD) != CONFIRM_VALUE:
        log.info("a working authorization exists: asked for confirmation", event="auth_start_needs_confirmation",
                 token_version=status["version"])
        return _page(409, "Bling is already authorized",
                     f"A working authorization is stored for account {account} (authorized at "
                     f"{status['authorized_at']}, last refreshed at {status['last_refresh_at']}, access token valid "
                     f"until {status['expires_at']}, version {status['version']}). A new authorization replaces it: "
                     "the pipeline then reads the company of whoever approves at Bling. To replace it, enter the admin "
                     f"key and confirm (curl: POST again with {CONFIRM_FIELD}={CONFIRM_VALUE}).", form="start",
                     confirm=True, account=account)
    settings = deps.settings
    client_id, _ = deps.oauth.client_credentials()
    state, browser_secret = oauth_state.issue(deps.collection(topology.OAUTH_STATES), settings.oauth_state_ttl_s,
                                              account)
    query = urllib.parse.urlencode({"response_type": "code", "client_id": client_id, "state": state})
    sep = "&" if "?" in settings.bling_authorize_url else "?"
    log.info("redirecting to Bling's consent page", event="auth_start", state_expires_in_s=settings.oauth_state_ttl_s,
             replaces_version=status["version"] if not status["reauth_required"] else None)
    response = _response("", 302, {"Location": f"{settings.bling_authorize_url}{sep}{query}", **_NO_STORE})
    response.set_cookie(oauth_state.COOKIE_NAME, browser_secret, max_age=settings.oauth_state_ttl_s,
                        path=_cookie_path(), httponly=True, samesite="Lax", secure=not _is_plain_localhost(request))
    return response


def _cookie_path() -> str:
    """The auth function's own path (AUTH_PUBLIC_URL), so the cookie goes to its callback and nowhere else."""
    public = urllib.parse.urlsplit(deps.settings.auth_public_url)
    return (public.path.rstrip("/") or "/") if public.scheme in ("http", "https") else "/"


def _is_plain_localhost(request: Any) -> bool:
    """Secure cookies are not sent over http; the only http origin we accept is this machine (the local stack)."""
    return request.scheme == "http" and request.host.rsplit(":", 1)[0] in _LOOPBACK_HOSTS


# ---------------------------------------------------------------------------------------------------- /callback


def _callback(request: Any) -> Any:
    args = request.args
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
    consumed = oauth_state.consume(deps.firestore, deps.collection(topology.OAUTH_STATES),
                                   deps.collection(topology.OAUTH_CODES), state, code,
                                   request.cookies.get(oauth_state.COOKIE_NAME, ""))
    refusal = consumed.refusal
    if refusal:
        log.warning(f"callback refused: {refusal}", event="auth_callback_refused", reason=refusal)
        text = (f"This authorization link cannot be used: {refusal}." if refusal != oauth_state.NOT_THIS_BROWSER else
                "This authorization was not started in this browser (or its cookie expired); the operator must "
                "open /start in the browser that then approves at Bling.")
        return _page(400, "Authorization failed", text, link=("start", "Start again"))
    with log.bind(account=consumed.account):
        return _exchange(code, consumed.account)


def _exchange(code: str, account: str) -> Any:
    """The state was accepted for `account`: exchange the code once and store the pair for that account only."""
    requested_at = time.time()
    try:
        token_response = deps.oauth.request_token({"grant_type": "authorization_code", "code": code})
    except BlingError as exc:
        log.error(f"Bling refused the authorization code: {exc}", event="auth_code_exchange_failed",
                  **exc.log_fields())
        return _page(502, "Authorization failed",
                     f"Bling refused the authorization code ({exc.error_type or exc.status}: "
                     f"{exc.description or exc.error_message}). Codes are valid for one minute and only once.",
                     link=("start", "Start again"))
    deps.account(account).token_store.store_authorization(token_response, requested_at=requested_at)
    deps.accounts.mark_authorized(account)  # pending -> active (a paused account stays paused)
    log.info("Bling authorization stored", event="auth_authorized")
    # Work parked while this account's authorization was missing or revoked (or no account was connected) resumes
    # now, after the account is active, so the released messages find it served; other accounts' work stays.
    parking.release_after_fix(deps, account)
    response = _response(*_page(200, "Bling is authorized",
                                f"Bling is authorized for account {account}: it can now read invoices, contacts and "
                                "products. You may close this page.", link=("status", "Status")))
    response.delete_cookie(oauth_state.COOKIE_NAME, path=_cookie_path())  # its state is spent
    return response


# ---------------------------------------------------------------------------------------------------- pages


# Nothing here may be cached, framed by another site (the key form), or leak its URL (code, state) as a referrer.
_NO_STORE = {"Cache-Control": "no-store", "X-Frame-Options": "DENY",
             "Content-Security-Policy": "frame-ancestors 'none'",
             "Referrer-Policy": "no-referrer"}


def _json(payload: dict[str, Any]) -> tuple[str, int, dict[str, str]]:
    return json.dumps(payload, default=str), 200, {"Content-Type": "application/json", **_NO_STORE}


def _link(route: str) -> str:
    """Absolute when AUTH_PUBLIC_URL is known (the function may sit under a path prefix), else relative."""
    public = deps.settings.auth_public_url.rstrip("/")
    return f"{public}/{route}" if public.startswith(("http://", "https://")) else route


def _page(status: int, title: str, text: str, link: tuple[str, str] | None = None, form: str = "",
          confirm: bool = False, account: str = "") -> tuple[str, int, dict[str, str]]:
    """A plain HTML page; `form` adds the operator's admin-key form posting to that route (password field, so the
    key never goes into a URL); `confirm` makes it the form that confirms replacing a working authorization;
    `account` (a validated slug) is posted with it, so the form names the account it was opened for."""
    link_html = f'<p><a href="{html.escape(_link(link[0]))}">{html.escape(link[1])}</a></p>' if link else ""
    form_html = ""
    if form:
        hidden = f'<input type="hidden" name="{CONFIRM_FIELD}" value="{CONFIRM_VALUE}">' if confirm else ""
        if account:
            hidden += f'<input type="hidden" name="{ACCOUNT_FIELD}" value="{html.escape(account)}">'
        button = "Replace the authorization" if confirm else "Continue"
        form_html = (f'<form method="post" action="{html.escape(_link(form))}"><p><label>Admin key '
                     f'<input type="password" name="{operator_auth.FORM_FIELD}" autocomplete="current-password" '
                     f'required autofocus></label></p>{hidden}<p><button type="submit">{button}</button></p></form>')
    body = (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title></head>"
            f"<body><h1>{html.escape(title)}</h1><p>{html.escape(text)}</p>{form_html}{link_html}</body></html>")
    return body, status, {"Content-Type": "text/html; charset=utf-8", **_NO_STORE}


def _response(body: str, status: int, headers: dict[str, str]) -> Any:
    import flask

    return flask.make_response(body, status, headers)
