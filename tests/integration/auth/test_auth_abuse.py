"""Issue 10 item 11: the public auth function must not be usable by anyone but the operator.

Each test plays an abuse against the real auth function (functions-framework's test client; one test client is one
browser with its own cookies), the Firestore emulator and the sandbox's OAuth endpoints. The attacker has the
function's public URL and can watch URLs (a state leaks through a referrer, a shared screen, a log line), but has
neither the admin key nor the operator's browser.
"""
from __future__ import annotations

import os
import urllib.parse
from typing import Any

from shared import firestore_client, topology
from tests.integration.auth.flow import (
    ADMIN_KEY,
    authorize,
    authorize_url,
    bearer,
    consent,
    operator_start,
    state_of,
    status,
)
from tests.integration.auth.test_auth_function import auth, auth_app, bling_server, new_auth_app
from tests.integration.bling.helpers import log_lines, reset_bling_state, store_pair, token_doc
from tests.integration.process_deps import account_client, current_deps, token_document

STATUS_FIELDS = (b"expires_at", b"version", b"last_error", b"authorized_at", b"token_stored", b"accounts",
                 b"parked", b"status_reason")


def _states() -> list[dict[str, Any]]:
    return [snap.to_dict() for snap in current_deps().collection(topology.OAUTH_STATES).stream()]


def test_an_anonymous_caller_cannot_start_a_flow(auth_app, bling_server, capsys):
    attacker = auth_app.test_client()

    answers = {
        "GET /start": attacker.get("/start"),
        "GET / (bare URL)": attacker.get("/"),
        "POST /start without key": attacker.post("/start", data={}),
        "POST /start with a wrong key": attacker.post("/start", data={"admin_key": "guess-" + "x" * 30}),
        "Bearer with a wrong key": attacker.get("/start", headers=bearer("wrong-" + "y" * 30)),
        # A key in the query string would end up in access logs and browser history: never accepted there.
        "key in the query string": attacker.get("/start?" + urllib.parse.urlencode({"admin_key": ADMIN_KEY})),
    }

    assert {name: r.status_code for name, r in answers.items()} == {
        name: 401 if "query" not in name else 400 for name in answers}
    assert _states() == []
    assert all("Location" not in r.headers for r in answers.values())
    assert b'type="password"' in answers["GET /start"].data  # the operator's browser gets a form instead
    assert ADMIN_KEY not in capsys.readouterr().out


def test_an_anonymous_caller_cannot_read_status(auth_app, bling_server):
    pair = store_pair(bling_server)
    token_document().update({"last_error": "invalid_grant: internal detail"})
    attacker = auth_app.test_client()

    answers = [attacker.get("/status"), attacker.post("/status", data={"admin_key": "nope" * 8}),
               attacker.get("/status", headers=bearer("nope" * 8))]

    assert [r.status_code for r in answers] == [401, 401, 401]
    for response in answers:
        assert not any(field in response.data for field in STATUS_FIELDS), response.data
        assert b"internal detail" not in response.data
    operator = auth_app.test_client()
    shown = status(operator)  # the operator still sees everything
    assert shown["token_stored"] is True and shown["version"] == 1 and "internal detail" in shown["last_error"]
    assert [(e["account"], e["status"]) for e in shown["accounts"]] == [("loja-teste", "active")]
    form = operator.post("/status", data={"admin_key": ADMIN_KEY})
    assert form.status_code == 200 and form.get_json()["version"] == 1
    for response in (form, operator.get("/status", headers=bearer())):  # ...and never a token or a secret
        for secret in (pair["access_token"], pair["refresh_token"], ADMIN_KEY, "test-client-secret-0123456789",
                       token_doc()["refresh_token"], token_document().get().get("refresh_token")):
            assert secret.encode() not in response.data


def test_a_callback_from_another_browser_completes_nothing(auth_app, bling_server, capsys):
    operator, attacker = auth_app.test_client(), auth_app.test_client()
    url = authorize_url(operator)
    callback = "/callback?" + consent(url)  # the operator's flow; its state and URL seen by the attacker
    # The attacker logs in to Bling as another company with our (public) client id and the leaked state.
    own_login = consent(bling_server.authorize_url + "?" + urllib.parse.urlencode(
        {"response_type": "code", "client_id": "test-client", "state": state_of(url)}))
    bling_server.reset_stats()

    no_cookie = attacker.get("/callback?" + own_login)
    attacker.set_cookie("bling_auth_flow", "forged-cookie-value-" + "z" * 24)
    wrong_cookie = attacker.get(callback)

    for response in (no_cookie, wrong_cookie):
        assert response.status_code == 400 and b"this browser" in response.data, response.data
    assert bling_server.stats()["token_calls"] == 0
    assert token_doc() == {}
    assert [s["used"] for s in _states()] == [False]  # the attacker did not burn the operator's state
    assert operator.get(callback).status_code == 200  # the operator's own browser still completes its flow
    assert bling_server.stats()["token_calls"] == 1 and status(operator)["version"] == 1
    out = capsys.readouterr().out
    refusals = [e for e in log_lines(out) if e.get("event") == "auth_callback_refused"]
    assert [e["reason"] for e in refusals] == ["not started in this browser", "not started in this browser"]
    assert ADMIN_KEY not in out


def test_replacing_a_working_authorization_needs_an_explicit_confirmation(auth, bling_server):
    pair = store_pair(bling_server)
    before = token_doc()

    asked = operator_start(auth)

    assert asked.status_code == 409 and "Location" not in asked.headers
    assert b"replace" in asked.data and b'name="confirm"' in asked.data
    assert before["authorized_at"].isoformat().encode() in asked.data  # what would be replaced...
    for secret in (pair["access_token"], pair["refresh_token"]):
        assert secret.encode() not in asked.data  # ...without any token
    assert _states() == [] and token_doc() == before

    replaced = authorize(auth, confirm=True)

    assert replaced.status_code == 200
    assert token_doc()["version"] == before["version"] + 1
    assert account_client().get("/nfe")["data"]


def test_no_confirmation_is_asked_when_the_stored_authorization_no_longer_works(auth, bling_server):
    store_pair(bling_server)
    token_document().update({"reauth_required": True})

    assert operator_start(auth).status_code == 302


def test_junk_callbacks_cost_no_token_call_and_the_owners_callback_still_works(auth_app, bling_server):
    operator, attacker = auth_app.test_client(), auth_app.test_client()
    url = authorize_url(operator)
    owner_state, owner_callback = state_of(url), "/callback?" + consent(url)
    bling_server.reset_stats()

    junk = []
    for i in range(6):  # today's per-instance cap is 5 token calls per minute
        minted = attacker.get("/start")  # an anonymous state, if /start still hands them out
        state = state_of(minted.headers["Location"]) if minted.status_code == 302 else owner_state
        junk.append(attacker.get("/callback?" + urllib.parse.urlencode({"code": f"junk-code-{i}", "state": state})))
    junk.append(attacker.get("/callback?" + urllib.parse.urlencode({"code": "junk", "state": "u" * 43})))

    assert [r.status_code for r in junk] == [400] * 7
    assert bling_server.stats()["token_calls"] == 0
    owner = operator.get(owner_callback)
    assert owner.status_code == 200, owner.data
    assert bling_server.stats()["token_calls"] == 1
    assert account_client().get("/nfe")["data"]


def test_without_an_admin_key_configured_start_and_status_refuse(auth_app, bling_server, capsys):
    os.environ.pop("AUTH_ADMIN_KEY")
    reset_bling_state()
    browser = new_auth_app().test_client()  # deployed without the key
    capsys.readouterr()

    answers = [browser.get("/start"), browser.post("/start", data={"admin_key": ""}),
               browser.get("/status", headers=bearer("")), browser.get("/status")]

    assert [r.status_code for r in answers] == [503] * 4
    assert all(b"AUTH_ADMIN_KEY" in r.data and b"expires_at" not in r.data for r in answers)
    errors = [e for e in log_lines(capsys.readouterr().out) if e["severity"] == "ERROR"]
    assert len(errors) == 4 and all(e.get("event") == "auth_admin_key_missing" for e in errors), errors
    assert _states() == []


def test_failed_admin_keys_are_rate_limited(auth_app, bling_server, capsys):
    attacker, operator = auth_app.test_client(), auth_app.test_client()

    guesses = [attacker.post("/start", data={"admin_key": f"guess-{i:04d}-" + "g" * 24}).status_code
               for i in range(10)]
    locked = attacker.post("/start", data={"admin_key": ADMIN_KEY})
    locked_status = operator.get("/status", headers=bearer())

    assert guesses == [401] * 10
    assert locked.status_code == 429 and locked_status.status_code == 429
    assert int(locked.headers["Retry-After"]) > 0
    assert _states() == []
    warnings = [e for e in log_lines(capsys.readouterr().out) if e.get("event") == "auth_admin_key_locked"]
    assert len(warnings) == 1  # one line when the lock starts, not one per refused attempt
