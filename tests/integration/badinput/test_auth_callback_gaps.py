"""Auth callback inputs tests/integration/auth does not cover yet (it covers replay, double submit, the same code with
another
state, a forged state, an expired state and access_denied): a callback without state, without code, with a
state that is not even shaped like one (oversized, SQL, control characters), an error without description, and a
live state presented with a cookie that is not the starting browser's (none, empty, oversized, non-ASCII, the
stored hash). Each: a plain 400 page, one clear log line saying why, no call to Bling's token endpoint, and the
stored authorization (and the live state) unchanged."""
from __future__ import annotations

import urllib.parse

from tests.integration.auth.test_auth_function import auth, auth_app, bling_server
from tests.integration.badinput.helpers import log_lines
from tests.integration.bling.helpers import store_pair, token_doc
from tests.integration.process_deps import current_deps

CASES = {
    "no state": ({"code": "abc"}, "missing_parameters"),
    "no code": ({"state": "s" * 43}, "missing_parameters"),
    "empty code and state": ({"code": "", "state": ""}, "missing_parameters"),
    "state of 10,000 characters": ({"code": "abc", "state": "a" * 10_000}, "unknown state"),
    "state with SQL": ({"code": "abc", "state": "x' OR '1'='1"}, "unknown state"),
    "state with a newline": ({"code": "abc", "state": "abcdefghijklmnop\nforged"}, "unknown state"),
    "state with a trailing newline": ({"code": "abc", "state": "abcdefghijklmnopq\n"}, "unknown state"),
}


def test_malformed_callbacks_are_refused_without_touching_the_token_endpoint(auth, bling_server, capsys):
    store_pair(bling_server)
    before = token_doc()
    problems = []
    for name, (query, reason) in CASES.items():
        capsys.readouterr()
        response = auth.get("/callback?" + urllib.parse.urlencode(query))
        lines = [e for e in log_lines(capsys.readouterr().out) if e.get("event") == "auth_callback_refused"]
        if response.status_code != 400:
            problems.append(f"{name}: status {response.status_code}")
        if len(lines) != 1 or reason not in (lines[0].get("reason", "") + lines[0]["message"]):
            problems.append(f"{name}: log lines {lines}")
        if b"Start again" not in response.data:
            problems.append(f"{name}: the page offers no way to start again")
    assert problems == []
    assert bling_server.stats()["token_calls"] == 0
    assert token_doc() == before


def test_an_error_without_description_is_shown_plainly(auth, bling_server, capsys):
    capsys.readouterr()
    response = auth.get("/callback?error=access_denied")
    assert response.status_code == 400 and b"access_denied" in response.data
    lines = [e for e in log_lines(capsys.readouterr().out) if e.get("event") == "auth_refused_by_bling"]
    assert len(lines) == 1 and lines[0]["bling_error"] == "access_denied"
    assert bling_server.stats()["token_calls"] == 0



COOKIE_CASES = {
    "no cookie": None,
    "empty cookie": "",
    "cookie of 4,000 characters (about what a browser keeps)": "c" * 4000,
    "cookie with non-ASCII": "ção-" + "x" * 40,
    "the stored hash itself (someone who read Firestore)": "HASH",
}


def test_a_live_state_with_a_bad_browser_cookie_is_refused_without_touching_anything(auth, auth_app, bling_server,
                                                                                    capsys):
    from shared import firestore_client, topology
    from tests.integration.auth.flow import authorize_url, consent, state_of

    url = authorize_url(auth)  # the operator's live flow
    callback = "/callback?" + consent(url)
    stored_hash = current_deps().collection(topology.OAUTH_STATES).document(state_of(url)).get().get("browser_sha256")
    problems = []
    for name, cookie in COOKIE_CASES.items():
        stranger = auth_app.test_client()
        if cookie is not None:
            stranger.set_cookie("bling_auth_flow", stored_hash if cookie == "HASH" else cookie)
        capsys.readouterr()
        response = stranger.get(callback)
        lines = [e for e in log_lines(capsys.readouterr().out) if e.get("event") == "auth_callback_refused"]
        if response.status_code != 400 or b"Start again" not in response.data:
            problems.append(f"{name}: status {response.status_code}")
        if [e.get("reason") for e in lines] != ["not started in this browser"]:
            problems.append(f"{name}: log lines {lines}")
    assert problems == []
    assert bling_server.stats()["token_calls"] == 0 and token_doc() == {}
    assert current_deps().collection(topology.OAUTH_STATES).document(state_of(url)).get().get("used") is False
    assert auth.get(callback).status_code == 200  # the operator's own browser still completes
