"""The auth function through functions-framework's test client, the real Firestore emulator and the sandbox's
OAuth endpoints (single-use codes; reusing one revokes the user)."""
from __future__ import annotations

import datetime
import os
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from local.stack.base import DEFAULT_ACCOUNT
from shared import firestore_client, operator_auth, topology
from shared.bling.errors import BlingReauthorizationRequired
from tests.integration.auth.flow import ADMIN_KEY, authorize, authorize_url, consent, state_of, status
from tests.integration.bling.helpers import log_lines, reset_bling_state, run_concurrently, token_doc
from tests.integration.process_deps import account_client, current_deps, parked_collection

SOURCE = Path(__file__).resolve().parents[3] / "functions" / "auth" / "main.py"


@pytest.fixture
def bling_server(firestore_env: Any, sandbox: Callable[..., Any]) -> Any:
    server = sandbox("small")
    os.environ["AUTH_ADMIN_KEY"] = ADMIN_KEY  # isolate_environment (tests/conftest.py) restores the environment
    reset_bling_state()
    yield server
    reset_bling_state()


def new_auth_app() -> Any:
    """The real auth function as a WSGI app, loaded now: a new instance, whose composition root reads today's
    environment (a test that changes the configuration deploys it with a new app)."""
    from functions_framework import create_app

    return create_app(target="auth_http", source=str(SOURCE), signature_type="http")


@pytest.fixture
def auth_app(bling_server: Any):
    """The real auth function as a WSGI app; each .test_client() is one browser with its own cookies."""
    return new_auth_app()


@pytest.fixture
def auth(auth_app: Any):
    """The operator's browser."""
    return auth_app.test_client()


def test_start_redirects_to_blings_consent_page_with_a_saved_state(auth, bling_server):
    location = authorize_url(auth)

    url = urllib.parse.urlsplit(location)
    query = dict(urllib.parse.parse_qsl(url.query))
    assert location.startswith(bling_server.authorize_url)
    assert query["response_type"] == "code" and query["client_id"] == "test-client"
    state = current_deps().collection(topology.OAUTH_STATES).document(query["state"]).get()
    assert state.exists and state.get("used") is False
    assert state.get("expire_at") > datetime.datetime.now(tz=datetime.UTC)
    cookie = auth.get_cookie("bling_auth_flow")
    assert cookie.http_only and cookie.same_site == "Lax" and not cookie.secure  # Secure only off on localhost
    assert state.get("browser_sha256") != cookie.value and len(state.get("browser_sha256")) == 64  # only its hash
    assert auth.post("/", data={"admin_key": ADMIN_KEY}).status_code == 302  # the bare URL starts too


def test_the_callback_exchanges_the_code_once_and_stores_the_pair(auth, bling_server, capsys):
    capsys.readouterr()

    response = authorize(auth)

    assert response.status_code == 200 and b"authorized" in response.data
    shown = status(auth)
    assert shown["token_stored"] is True and shown["reauth_required"] is False
    assert bling_server.stats()["token_calls"] == 1
    assert account_client().get("/nfe")["data"]
    out = capsys.readouterr().out
    doc = token_doc()
    for secret in (doc["access_token"], doc["refresh_token"], "test-client-secret-0123456789"):
        assert secret not in out and secret.encode() not in response.data
    assert all(line.get("function") == "auth" for line in log_lines(out) if line.get("event", "").startswith("auth"))


def test_a_replayed_callback_never_reaches_the_token_endpoint(auth, bling_server):
    callback = "/callback?" + consent(authorize_url(auth))
    assert auth.get(callback).status_code == 200

    replay = auth.get(callback)

    assert replay.status_code == 400 and b"already used" in replay.data
    assert bling_server.stats()["token_calls"] == 1
    assert account_client().get("/nfe")["data"]  # Bling did not revoke the user


def test_a_double_submitted_callback_is_exchanged_once(auth, bling_server):
    callback = "/callback?" + consent(authorize_url(auth))

    codes = run_concurrently(2, lambda i: auth.get(callback).status_code)

    assert sorted(codes) == [200, 400]
    assert bling_server.stats()["token_calls"] == 1


def test_the_same_code_with_another_state_is_refused(auth, bling_server):
    query = dict(urllib.parse.parse_qsl(consent(authorize_url(auth))))
    assert auth.get("/callback?" + urllib.parse.urlencode(query)).status_code == 200
    other_state = state_of(authorize_url(auth, confirm=True))  # a new flow, in the same browser

    response = auth.get("/callback?" + urllib.parse.urlencode({"code": query["code"], "state": other_state}))

    assert response.status_code == 400
    assert bling_server.stats()["token_calls"] == 1


def test_a_forged_state_is_refused(auth, bling_server):
    query = dict(urllib.parse.parse_qsl(consent(authorize_url(auth))))

    response = auth.get("/callback?" + urllib.parse.urlencode({"code": query["code"], "state": "forged" * 4}))

    assert response.status_code == 400 and b"unknown state" in response.data
    assert bling_server.stats()["token_calls"] == 0


def test_an_expired_state_is_refused(auth, bling_server):
    query = dict(urllib.parse.parse_qsl(consent(authorize_url(auth))))
    current_deps().collection(topology.OAUTH_STATES).document(query["state"]).update(
        {"expire_at": datetime.datetime.now(tz=datetime.UTC) - datetime.timedelta(seconds=1)})

    response = auth.get("/callback?" + urllib.parse.urlencode(query))

    assert response.status_code == 400 and b"expired" in response.data
    assert bling_server.stats()["token_calls"] == 0


def test_blings_access_denied_is_shown_escaped(auth, bling_server):
    bling_server.configure(authorize_error="access_denied")

    response = auth.get("/callback?" + consent(authorize_url(auth)))

    assert response.status_code == 400
    assert b"access_denied" in response.data and b"The user denied access" in response.data
    hostile = auth.get("/callback?" + urllib.parse.urlencode({"error": "x", "error_description": "<script>"}))
    assert b"<script>" not in hostile.data and b"&lt;script&gt;" in hostile.data
    assert bling_server.stats()["token_calls"] == 0


def test_a_revoked_refresh_token_shows_in_status_with_exactly_one_error_line(auth, bling_server, capsys):
    assert authorize(auth).status_code == 200
    bling_server.revoke_refresh_tokens()
    bling_server.expire_access_tokens()
    capsys.readouterr()

    def work(i: int) -> Any:
        return account_client().get("/nfe")

    results = run_concurrently(3, work) + run_concurrently(2, work)

    assert all(isinstance(r, BlingReauthorizationRequired) for r in results), results
    shown = status(auth)
    assert shown["reauth_required"] is True and shown["reauthorize_url"].endswith("/start?account=loja-teste")
    errors = [line for line in log_lines(capsys.readouterr().out) if line["severity"] == "ERROR"]
    assert len(errors) == 1 and "re-authorization is required" in errors[0]["message"]

    assert authorize(auth).status_code == 200  # the human re-authorizes
    assert status(auth)["reauth_required"] is False
    assert account_client().get("/nfe")["data"]


def test_unknown_paths_are_404(auth):
    assert auth.get("/nope").status_code == 404


def test_a_new_authorization_publishes_the_parked_work_again(auth, pubsub_topology):
    from shared import parking, topology
    from shared.messages import PubSubMessage

    parking.park(parked_collection(), topology.NFE.topic, PubSubMessage(data=b'{"parked": 1}', attributes={"k": "v"},
                                                  message_id="m-1"), reason="reauthorization required")

    assert authorize(auth).status_code == 200

    assert pubsub_topology.pull_data(topology.NFE.topic) == [{"parked": 1}]
    assert list(parked_collection().stream()) == []


def test_routes_work_behind_the_functions_url_prefix():
    from functions.auth.main import _route

    assert _route("/bling-auth", False) == "start" and _route("/", False) == "start"
    assert _route("/bling-auth/", True) == "callback" and _route("/", True) == "callback"
    assert _route("/bling-auth/status", False) == "status" and _route("/x/start", False) == "start"
    assert _route("/favicon.ico", False) == ""


def test_the_flow_cookie_is_httponly_lax_scoped_and_secure_except_on_plain_localhost(auth_app, bling_server):
    os.environ["AUTH_PUBLIC_URL"] = "https://southamerica-east1-p.cloudfunctions.net/bling-auth"
    reset_bling_state()
    deployed = new_auth_app()

    def set_cookie(base_url: str) -> str:
        response = deployed.test_client().post("/start", data={"admin_key": ADMIN_KEY, "account": DEFAULT_ACCOUNT},
                                               base_url=base_url)
        assert response.status_code == 302
        return response.headers["Set-Cookie"]

    public = set_cookie("https://southamerica-east1-p.cloudfunctions.net")
    behind_a_proxy = set_cookie("http://bling-auth-xyz.a.run.app")  # TLS ended in front of the instance
    local = set_cookie("http://127.0.0.1:8080")

    for header in (public, behind_a_proxy, local):
        assert "HttpOnly" in header and "SameSite=Lax" in header and "Max-Age=600" in header, header
        assert "Path=/bling-auth" in header, header  # sent back to the callback, not to the other functions
    assert "Secure" in public and "Secure" in behind_a_proxy and "Secure" not in local
