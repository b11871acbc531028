"""OAuth2 as Bling does it: auto-approved authorize, single-use codes, rotating refresh tokens, Basic auth."""
from __future__ import annotations

import time
import urllib.parse

import requests

from tests.integration.sandbox.helpers import Api, basic

INVALID_TOKEN = {"error": {"type": "invalid_token", "message": "invalid_token",
                           "description": "The access token provided has expired"}}


def authorize(server, client_id="sandbox-client", state="st4te") -> dict[str, str]:
    r = requests.get(server.authorize_url, params={"response_type": "code", "client_id": client_id, "state": state,
                                                   "redirect_uri": "http://evil.example/"},
                     allow_redirects=False, timeout=5)
    assert r.status_code == 302
    location = r.headers["Location"]
    assert location.startswith(server.redirect_uri + "?")  # the registered URI, never the parameter
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))


def token(server, data, auth=None, headers=None) -> requests.Response:
    h = {"Authorization": auth or basic(), **(headers or {})}
    return requests.post(server.token_url, data=data, headers=h, timeout=5)


def api_status(server, access_token: str) -> int:
    return requests.get(server.api_base + "/nfe", headers={"Authorization": f"Bearer {access_token}"},
                        timeout=5).status_code


def test_authorize_redirects_with_code_and_state(make_server):
    server = make_server()
    params = authorize(server)
    assert params["state"] == "st4te" and len(params["code"]) >= 20
    bad = authorize(server, client_id="nope")
    assert bad["error"] == "invalid_client" and bad["state"] == "st4te" and "error_description" in bad
    requests.post(server.url + "/__admin/config", json={"authorize_error": "access_denied"}, timeout=5)
    denied = authorize(server)
    assert denied["error"] == "access_denied" and "code" not in denied
    requests.post(server.url + "/__admin/config", json={"authorize_error": None}, timeout=5)
    assert "code" in authorize(server)


def test_code_exchange_then_reuse_revokes_user(make_server):
    server = make_server()
    code = authorize(server)["code"]
    r = token(server, {"grant_type": "authorization_code", "code": code})
    assert r.status_code == 200
    pair = r.json()
    assert set(pair) == {"access_token", "expires_in", "token_type", "scope", "refresh_token"}
    assert pair["expires_in"] == 21600 and pair["token_type"] == "Bearer"
    other = server.issue_tokens()
    assert api_status(server, pair["access_token"]) == 200
    again = token(server, {"grant_type": "authorization_code", "code": code})
    assert again.status_code == 400
    assert again.json() == {"error": {
        "type": "VALIDATION_ERROR", "message": "Invalid authorization code",
        "description": "This authorization code has already been used, "
                       "for security reasons the user has been revoked."}}
    # Every token of the client is dead now.
    assert api_status(server, pair["access_token"]) == 401
    assert api_status(server, other["access_token"]) == 401
    r = token(server, {"grant_type": "refresh_token", "refresh_token": pair["refresh_token"]})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_grant"


def test_code_expires(make_server):
    server = make_server(code_ttl_s=0.2)
    code = authorize(server)["code"]
    time.sleep(0.3)
    r = token(server, {"grant_type": "authorization_code", "code": code})
    assert r.status_code == 400
    assert r.json()["error"] == {"type": "invalid_grant", "message": "invalid_grant",
                                 "description": "The authorization code has expired"}
    r = token(server, {"grant_type": "authorization_code", "code": "unknown"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_grant"


def test_refresh_rotation(make_server):
    server = make_server()
    first = server.issue_tokens()
    r = token(server, {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]})
    assert r.status_code == 200
    second = r.json()
    assert second["refresh_token"] != first["refresh_token"] and second["access_token"] != first["access_token"]
    # The old refresh token is dead; the old access token lives on until it expires (default).
    dead = token(server, {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]})
    assert dead.status_code == 400
    assert dead.json() == {"error": {"type": "invalid_grant", "message": "invalid_grant",
                                     "description": "Invalid refresh token"}}
    assert api_status(server, first["access_token"]) == 200
    assert api_status(server, second["access_token"]) == 200
    # The new refresh token works once.
    assert token(server, {"grant_type": "refresh_token", "refresh_token": second["refresh_token"]}).status_code == 200


def test_refresh_can_revoke_old_access_token(make_server):
    server = make_server(refresh_revokes_access=True)
    first = server.issue_tokens()
    assert token(server, {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}).status_code == 200
    assert api_status(server, first["access_token"]) == 401


def test_basic_auth_required(make_server):
    server = make_server()
    rt = server.issue_tokens()["refresh_token"]
    body = {"grant_type": "refresh_token", "refresh_token": rt}
    no_auth = requests.post(server.token_url, data=body, timeout=5)
    assert no_auth.status_code == 401 and no_auth.json()["error"]["type"] == "invalid_client"
    in_body = requests.post(server.token_url, timeout=5,
                            data={**body, "client_id": "sandbox-client", "client_secret": "sandbox-secret"})
    assert in_body.status_code == 401 and in_body.json()["error"]["type"] == "invalid_client"
    wrong = token(server, body, auth=basic(secret="wrong"))
    assert wrong.status_code == 401
    as_json = requests.post(server.token_url, json=body, headers={"Authorization": basic()}, timeout=5)
    assert as_json.status_code == 400
    # None of the refused calls used up the refresh token.
    assert token(server, body).status_code == 200


def test_jwt_tokens_when_asked(make_server):
    server = make_server()
    code = authorize(server)["code"]
    r = token(server, {"grant_type": "authorization_code", "code": code}, headers={"enable-jwt": "1"})
    pair = r.json()
    for value in (pair["access_token"], pair["refresh_token"]):
        parts = value.split(".")
        assert len(parts) == 3 and 1500 <= len(value) <= 3000
    assert api_status(server, pair["access_token"]) == 200
    r = token(server, {"grant_type": "refresh_token", "refresh_token": pair["refresh_token"]},
              headers={"enable-jwt": "1"})
    assert len(r.json()["access_token"]) >= 1500
    plain = server.issue_tokens()
    assert len(plain["access_token"]) < 100


def test_invalid_token_shape(make_server):
    server = make_server()
    for headers in ({}, {"Authorization": "Bearer nope"}):
        r = requests.get(server.api_base + "/nfe", headers=headers, timeout=5)
        assert r.status_code == 401 and r.json() == INVALID_TOKEN
    pair = server.issue_tokens()
    requests.post(server.url + "/__admin/expire_access_tokens", timeout=5)
    r = requests.get(server.api_base + "/nfe", headers={"Authorization": f"Bearer {pair['access_token']}"}, timeout=5)
    assert r.status_code == 401 and r.json() == INVALID_TOKEN


def test_access_token_lifetime(make_server):
    server = make_server(access_ttl_s=0.3)
    pair = server.issue_tokens()
    assert pair["expires_in"] == 0 or pair["expires_in"] <= 1
    assert api_status(server, pair["access_token"]) == 200
    time.sleep(0.4)
    assert api_status(server, pair["access_token"]) == 401


def test_revoke_refresh_tokens(make_server):
    server = make_server()
    pair = server.issue_tokens()
    requests.post(server.url + "/__admin/revoke_refresh_tokens", timeout=5)
    assert token(server, {"grant_type": "refresh_token", "refresh_token": pair["refresh_token"]}).status_code == 400


def test_token_endpoint_ip_block(make_server):
    server = make_server()
    rt = server.issue_tokens()["refresh_token"]
    statuses = [token(server, {"grant_type": "refresh_token", "refresh_token": rt}).status_code for _ in range(21)]
    assert 403 not in statuses[:20] and statuses[20] == 403
    stats = requests.get(server.url + "/__admin/stats", timeout=5).json()
    assert stats["ip_blocked"] and stats["token_calls"] == 21 and stats["token_calls_max_in_60s"] == 21
    # Blocked means blocked everywhere, until an admin lifts it.
    assert Api(server).get("/nfe").status_code == 403
    requests.post(server.url + "/__admin/unblock", timeout=5)
    assert Api(server).get("/nfe").status_code == 200
