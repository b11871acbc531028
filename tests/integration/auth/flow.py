"""The browser's and the operator's side of the auth function, for tests that drive it through functions-framework's
test client (one test client = one browser with its own cookie jar)."""
from __future__ import annotations

import urllib.parse
from typing import Any

import requests

from local.stack.base import DEFAULT_ACCOUNT

# The operator's admin key in these tests (production: Secret Manager `bling-auth-admin-key` → env AUTH_ADMIN_KEY).
ADMIN_KEY = "operator-admin-key-for-tests-7f3a9c01d2"


def bearer(key: str = ADMIN_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def operator_start(browser: Any, *, confirm: bool = False, key: str = ADMIN_KEY,
                   account: str | None = DEFAULT_ACCOUNT) -> Any:
    """The operator submits the /start form with the admin key (and, when asked, the replace confirmation), for
    `account` (default: the tests' account; None: no account field, as today's single-account commands)."""
    form = {"admin_key": key}
    if confirm:
        form["confirm"] = "replace"
    if account is not None:
        form["account"] = account
    return browser.post("/start", data=form)


def authorize_url(browser: Any, *, confirm: bool = False, account: str | None = DEFAULT_ACCOUNT) -> str:
    """operator_start, which must redirect to Bling's consent page; that URL."""
    response = operator_start(browser, confirm=confirm, account=account)
    assert response.status_code == 302, (response.status_code, response.data[:300])
    return response.headers["Location"]


def state_of(url: str) -> str:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))["state"]


def consent(url: str) -> str:
    """What the browser does at Bling: the query string Bling sends back to the callback."""
    answer = requests.get(url, allow_redirects=False, timeout=10)
    assert answer.status_code == 302
    return urllib.parse.urlsplit(answer.headers["Location"]).query


def authorize(browser: Any, *, confirm: bool = False, account: str | None = DEFAULT_ACCOUNT) -> Any:
    """The whole flow in one browser: /start as the operator, Bling's consent, /callback; the callback's answer."""
    return browser.get("/callback?" + consent(authorize_url(browser, confirm=confirm, account=account)))


def status(browser: Any, account: str | None = None) -> dict[str, Any]:
    """/status as the operator: every account (and, with one account, its fields at the top level too), or the
    entry of `account`."""
    query = "?" + urllib.parse.urlencode({"account": account}) if account else ""
    response = browser.get("/status" + query, headers=bearer())
    assert response.status_code == 200, (response.status_code, response.data[:300])
    return response.get_json()
