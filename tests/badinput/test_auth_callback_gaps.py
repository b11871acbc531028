"""Auth callback inputs tests/auth does not cover yet (it covers replay, double submit, the same code with another
state, a forged state, an expired state and access_denied): a callback without state, without code, with a
state that is not even shaped like one (oversized, SQL, control characters) and an error without description.
Each: a plain 400 page, one clear log line saying
why, no call to Bling's token endpoint, and the stored authorization unchanged."""
from __future__ import annotations

import urllib.parse

from tests.auth.test_auth_function import auth, auth_app, bling_server  # noqa: F401 - fixtures
from tests.badinput.helpers import log_lines
from tests.bling.helpers import store_pair, token_doc

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

