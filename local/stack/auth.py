"""The operator's side of the OAuth consent (ADR 007), through the auth function: /start with the admin key,
Bling's authorize page, /callback in the same browser session; and /status read with the key."""
from __future__ import annotations

import urllib.parse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import requests

REDIRECTS = (301, 302, 303, 307)


def authorize_through_auth_function(auth_url: str, admin_key: str, *, replace: bool = False,
                                    timeout_s: float = 30.0, account: str | None = None,
                                    bling_account: str | None = None) -> dict[str, Any]:
    """The operator's browser through the OAuth dance, with no redirect followed automatically: open /start (the
    key form), submit the key (and, if asked and `replace`, the confirmation), follow Bling's consent back to
    /callback with the same cookies. Returns the /status JSON.

    account: the pipeline account to connect (sent to /start as `account`, in the URL and the form); None: none
    sent, as with one account. bling_account: the sandbox company whose user approves (None: the sandbox's default
    account); on Bling that is whoever is logged in, in the sandbox a parameter of the authorize URL.
    LocalStack.authorize() passes `account` as bling_account when its sandbox has a company of that name."""
    import requests

    start_url = auth_url + "/start" + (f"?{urllib.parse.urlencode({'account': account})}" if account else "")
    form = {"account": account} if account else {}
    browser = requests.Session()  # its cookie jar binds the callback to this /start, as a browser's does
    opened = browser.get(start_url, allow_redirects=False, timeout=timeout_s)
    if opened.status_code != 401 or 'type="password"' not in opened.text:
        raise RuntimeError(f"GET {auth_url}/start: expected the admin-key form (401), got {opened.status_code}: "
                           f"{opened.text[:300]}")
    start = browser.post(start_url, data={"admin_key": admin_key, **form}, allow_redirects=False, timeout=timeout_s)
    if start.status_code == 409 and replace:
        start = browser.post(start_url, data={"admin_key": admin_key, "confirm": "replace", **form},
                             allow_redirects=False, timeout=timeout_s)
    hint = " (a working authorization exists: pass replace=True to replace it)" if start.status_code == 409 else ""
    authorize_url = _redirect_target(start, f"POST {auth_url}/start", hint)
    if bling_account:
        from local.sandbox.accounts import APPROVER_PARAM

        approver = urllib.parse.urlencode({APPROVER_PARAM: bling_account})
        authorize_url += ("&" if "?" in authorize_url else "?") + approver
    callback_url = _redirect_target(requests.get(authorize_url, allow_redirects=False, timeout=timeout_s),
                                    "GET authorize URL")
    if not callback_url.startswith(auth_url):
        raise RuntimeError(f"authorize redirected to {urllib.parse.urlsplit(callback_url)._replace(query='').geturl()}"
                           f", not to the auth function {auth_url}")
    callback = browser.get(callback_url, allow_redirects=False, timeout=timeout_s)
    if callback.status_code != 200:
        raise RuntimeError(f"GET {auth_url}/callback: expected 200, got {callback.status_code}: "
                           f"{callback.text[:300]}")
    return auth_status(auth_url, admin_key, timeout_s=timeout_s)


def _redirect_target(response: requests.Response, what: str, hint: str = "") -> str:
    """Where a redirect points; RuntimeError naming `what` when the response is not one."""
    if response.status_code not in REDIRECTS or "Location" not in response.headers:
        raise RuntimeError(f"{what}: expected a redirect, got {response.status_code}{hint}: {response.text[:300]}")
    return response.headers["Location"]


def auth_status(auth_url: str, admin_key: str, timeout_s: float = 10.0) -> dict[str, Any]:
    """The auth function's /status JSON, read as the operator (Bearer admin key)."""
    import requests

    status = requests.get(auth_url + "/status", headers={"Authorization": f"Bearer {admin_key}"}, timeout=timeout_s)
    if status.status_code != 200:
        raise RuntimeError(f"GET {auth_url}/status: {status.status_code}: {status.text[:300]}")
    body: dict[str, Any] = status.json()
    return body
