"""local.stack.auth.authorize_through_auth_function(account=...) against the multi-account sandbox: the account
reaches the auth function's /start, and the company named approves at Bling, so the stored pair is that company's.

The auth function here is a small stand-in with the real one's operator flow (key form on GET /start, 302 to
Bling's authorize on POST /start, code exchange on /callback, /status with the key): the real one (and its
per-account start page) is tested under tests/integration/auth; this tests the helper and the sandbox."""
from __future__ import annotations

import base64
import http.server
import json
import threading
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from local.sandbox.accounts import SandboxAccount
from local.sandbox.dataset import build_account_dataset
from local.sandbox.server import SandboxServer
from local.stack.auth import authorize_through_auth_function

KEY = "operator-key"


class StandInAuth(http.server.ThreadingHTTPServer):
    sandbox: SandboxServer
    starts: list[dict[str, Any]]
    pairs: dict[str, dict[str, Any]]


class StandInHandler(http.server.BaseHTTPRequestHandler):
    server: StandInAuth

    def log_message(self, *args: Any) -> None:
        return

    def _reply(self, status: int, body: str = "", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body.encode())))
        self.end_headers()
        self.wfile.write(body.encode())

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        if url.path == "/start":
            self._reply(401, '<form method="post"><input type="password" name="admin_key"></form>')
        elif url.path == "/callback":
            account = urllib.parse.unquote(self.headers.get("Cookie", "").partition("acct=")[2]) or "(none)"
            sandbox = self.server.sandbox
            basic = base64.b64encode(f"{sandbox.client_id}:{sandbox.client_secret}".encode()).decode()
            pair = requests.post(sandbox.token_url, data={"grant_type": "authorization_code", "code": query["code"]},
                                 headers={"Authorization": f"Basic {basic}"}, timeout=5)
            self.server.pairs[account] = pair.json()
            self._reply(200 if pair.ok else 400, "stored")
        elif url.path == "/status" and self.headers.get("Authorization") == f"Bearer {KEY}":
            self._reply(200, json.dumps({"accounts": sorted(self.server.pairs)}))
        else:
            self._reply(404)

    def do_POST(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        form = dict(urllib.parse.parse_qsl(self.rfile.read(int(self.headers["Content-Length"])).decode()))
        self.server.starts.append({"query": dict(urllib.parse.parse_qsl(url.query)), "form": dict(form)})
        if url.path != "/start" or form.pop("admin_key", "") != KEY:
            self._reply(403)
            return
        location = self.server.sandbox.authorize_url + "?" + urllib.parse.urlencode(
            {"response_type": "code", "client_id": self.server.sandbox.client_id, "state": "st"})
        self._reply(302, headers={"Location": location,
                                  "Set-Cookie": f"acct={urllib.parse.quote(form.get('account', ''))}"})


@pytest.fixture
def stand_in() -> Iterator[StandInAuth]:
    auth = StandInAuth(("127.0.0.1", 0), StandInHandler)
    auth.starts, auth.pairs = [], {}
    auth.sandbox = SandboxServer(
        accounts=[SandboxAccount("loja-a", build_account_dataset("small", 21, 0)),
                  SandboxAccount("loja-b", build_account_dataset("small", 22, 1))],
        rate_per_s=1000, redirect_uri=f"http://127.0.0.1:{auth.server_address[1]}/callback").start()
    thread = threading.Thread(target=auth.serve_forever, daemon=True)
    thread.start()
    yield auth
    auth.shutdown()
    auth.server_close()
    auth.sandbox.stop()


def seed_read_by(auth: StandInAuth, account: str) -> int:
    """The seed of the data set the stored pair's access token reads (each account has its own seed)."""
    token = auth.pairs[account]["access_token"]
    notes = requests.get(auth.sandbox.api_base + "/nfe", headers={"Authorization": f"Bearer {token}"},
                         timeout=5).json()["data"]
    listed = {n["id"] for n in notes}
    seeds = {truth["seed"] for truth in map(auth.sandbox.truth, auth.sandbox.account_names)
             if listed and listed <= set(truth["nfe"])}
    assert len(seeds) == 1, seeds
    return seeds.pop()


def test_the_named_account_approves(stand_in: StandInAuth):
    url = f"http://127.0.0.1:{stand_in.server_address[1]}"
    status = authorize_through_auth_function(url, KEY, account="loja-b", bling_account="loja-b")
    assert status == {"accounts": ["loja-b"]}
    assert stand_in.starts[-1] == {"query": {"account": "loja-b"}, "form": {"admin_key": KEY, "account": "loja-b"}}
    assert seed_read_by(stand_in, "loja-b") == 22
    # The pipeline account and the approving company can differ (e.g. the operator logged in as another company);
    # without bling_account the sandbox's default company approves.
    authorize_through_auth_function(url, KEY, account="loja-c", bling_account="loja-b")
    assert seed_read_by(stand_in, "loja-c") == 22
    authorize_through_auth_function(url, KEY, account="loja-d")
    assert seed_read_by(stand_in, "loja-d") == 21


def test_without_account_nothing_changes(stand_in: StandInAuth):
    url = f"http://127.0.0.1:{stand_in.server_address[1]}"
    authorize_through_auth_function(url, KEY)
    assert stand_in.starts[-1] == {"query": {}, "form": {"admin_key": KEY}}
    assert seed_read_by(stand_in, "(none)") == 21  # the sandbox's default (first) account approved
