"""Several Bling accounts (companies) behind one sandbox: one OAuth app, one authorization per company, each token
answered from its own company's data, each company its own 3/s and daily limit, the IP rules shared by all."""
from __future__ import annotations

import time
import urllib.parse

import pytest
import requests

from local.sandbox import jsonutil
from local.sandbox.dataset import build_account_dataset, build_profile
from local.sandbox.server import DEFAULT_ACCOUNT, SandboxAccount, SandboxServer
from tests.integration.sandbox.helpers import basic

INVALID_TOKEN = {"error": {"type": "invalid_token", "message": "invalid_token",
                           "description": "The access token provided has expired"}}


@pytest.fixture
def two(make_server):
    """Accounts loja-a (seed 11) and loja-b (seed 12, twice as many notes), each at 3 req/s."""
    def start(**kw) -> SandboxServer:
        return make_server(None, accounts=[
            SandboxAccount("loja-a", build_account_dataset("small", seed=11, index=0), **kw.pop("a", {})),
            SandboxAccount("loja-b", build_account_dataset("demo", seed=12, index=1), **kw.pop("b", {})),
        ], **kw)
    return start


def get(server: SandboxServer, token: str, path: str, **params) -> requests.Response:
    return requests.get(server.api_base + path, params=params, headers={"Authorization": f"Bearer {token}"},
                        timeout=10)


def listed_ids(server: SandboxServer, token: str) -> set[int]:
    """Every outgoing NF-e id GET /nfe lists for this token (cancelled included), all pages."""
    ids: set[int] = set()
    for page in range(1, 100):
        r = get(server, token, "/nfe", pagina=page, limite=100)
        assert r.status_code == 200, r.text
        data = jsonutil.loads(r.content)["data"]
        if not data:
            return ids
        ids |= {note["id"] for note in data}
    raise AssertionError("GET /nfe never ended")


def authorize(server: SandboxServer, account: str | None) -> str:
    params = {"response_type": "code", "client_id": "sandbox-client", "state": "s"}
    if account is not None:
        params["sandbox_account"] = account
    r = requests.get(server.authorize_url, params=params, allow_redirects=False, timeout=5)
    assert r.status_code == 302, r.text
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(r.headers["Location"]).query))["code"]


def token_call(server: SandboxServer, form: dict[str, str]) -> requests.Response:
    return requests.post(server.token_url, data=form, headers={"Authorization": basic()}, timeout=5)


def admin(server: SandboxServer, path: str, body: dict | None = None) -> requests.Response:
    url = f"{server.url}/__admin/{path}"
    return requests.post(url, json=body, timeout=10) if body is not None else requests.get(url, timeout=10)


def test_each_token_sees_only_its_own_account(two):
    server = two(rate_per_s=1000, a={"rate_per_s": 1000}, b={"rate_per_s": 1000})
    truth_a, truth_b = server.truth(account="loja-a"), server.truth(account="loja-b")
    assert truth_a["seed"] == 11 and truth_b["seed"] == 12
    a, b = server.issue_tokens(account="loja-a"), server.issue_tokens(account="loja-b")
    ids_a, ids_b = listed_ids(server, a["access_token"]), listed_ids(server, b["access_token"])
    assert ids_a == set(truth_a["outgoing_ids"]) - set(truth_a["cancelled_ids"])
    assert ids_b == set(truth_b["outgoing_ids"]) - set(truth_b["cancelled_ids"])
    # Bling's ids are global: two companies never share one, so a row can always be told apart.
    assert not set(truth_a["nfe"]) & set(truth_b["nfe"]) and not set(truth_a["contacts"]) & set(truth_b["contacts"])
    one_b = max(ids_b)
    detail = get(server, b["access_token"], f"/nfe/{one_b}")
    assert detail.status_code == 200 and jsonutil.loads(detail.content)["data"] == truth_b["nfe"][one_b]
    assert get(server, a["access_token"], f"/nfe/{one_b}").status_code == 404  # A's token never reads B's note
    contact_b = next(iter(truth_b["contacts"]))
    assert get(server, a["access_token"], f"/contatos/{contact_b}").status_code == 404
    # Over HTTP too, each account's truth is its own; the unscoped truth is the first (default) account's.
    assert admin(server, "accounts/loja-b/truth").json()["seed"] == 12
    assert admin(server, "truth").json()["seed"] == 11
    assert admin(server, "accounts").json()["accounts"] == ["loja-a", "loja-b"]


def test_stats_per_account_and_totals(two):
    server = two(a={"rate_per_s": 1000}, b={"rate_per_s": 1000})
    a, b = server.issue_tokens(account="loja-a"), server.issue_tokens(account="loja-b")
    for _ in range(3):
        assert get(server, a["access_token"], "/nfe").status_code == 200
    assert get(server, b["access_token"], "/nfe").status_code == 200
    assert get(server, b["access_token"], "/nope").status_code == 404
    stats = admin(server, "stats").json()
    assert stats["requests_total"] == 5 and stats["responses_by_status"] == {"200": 4, "404": 1}
    assert stats["accounts"]["loja-a"]["requests_total"] == 3
    assert stats["accounts"]["loja-b"]["responses_by_status"] == {"200": 1, "404": 1}
    assert admin(server, "accounts/loja-b/stats").json()["requests_total"] == 2
    assert server.stats(account="loja-a")["requests_by_kind"]["nfe_list"] == 3
    admin(server, "accounts/loja-a/reset_stats", {})
    assert server.stats(account="loja-a")["requests_total"] == 0 and server.stats()["requests_total"] == 2


def test_authorize_binds_code_and_pairs_to_the_approving_account(two):
    server = two(a={"rate_per_s": 1000}, b={"rate_per_s": 1000})
    truth_b = server.truth(account="loja-b")
    code_b = authorize(server, "loja-b")
    pair_b = token_call(server, {"grant_type": "authorization_code", "code": code_b})
    assert pair_b.status_code == 200
    b = pair_b.json()
    assert listed_ids(server, b["access_token"]) == set(truth_b["outgoing_ids"]) - set(truth_b["cancelled_ids"])
    # The refresh token returns a pair of its own account.
    again = token_call(server, {"grant_type": "refresh_token", "refresh_token": b["refresh_token"]}).json()
    assert listed_ids(server, again["access_token"]) == listed_ids(server, b["access_token"])
    # Without the parameter the default (first) account approves, as with one account.
    pair_a = token_call(server, {"grant_type": "authorization_code", "code": authorize(server, None)}).json()
    truth_a = server.truth(account="loja-a")
    assert listed_ids(server, pair_a["access_token"]) == set(truth_a["outgoing_ids"]) - set(truth_a["cancelled_ids"])
    assert server.stats(account="loja-a")["token_calls"] == 1 and server.stats()["token_calls"] == 3
    # A company that does not exist cannot approve.
    unknown = requests.get(server.authorize_url, params={"response_type": "code", "client_id": "sandbox-client",
                                                          "sandbox_account": "loja-z"},
                           allow_redirects=False, timeout=5)
    assert unknown.status_code == 404 and "loja-z" in unknown.text


def test_code_reuse_revokes_only_that_account(two):
    server = two()
    a = server.issue_tokens(account="loja-a")
    code_b = authorize(server, "loja-b")
    b = token_call(server, {"grant_type": "authorization_code", "code": code_b}).json()
    reused = token_call(server, {"grant_type": "authorization_code", "code": code_b})
    assert reused.status_code == 400 and reused.json()["error"]["type"] == "VALIDATION_ERROR"
    r = get(server, b["access_token"], "/nfe")
    assert r.status_code == 401 and r.json() == INVALID_TOKEN
    assert token_call(server, {"grant_type": "refresh_token", "refresh_token": b["refresh_token"]}).status_code == 400
    assert get(server, a["access_token"], "/nfe").status_code == 200
    assert token_call(server, {"grant_type": "refresh_token", "refresh_token": a["refresh_token"]}).status_code == 200


def test_admin_revokes_one_account(two):
    server = two()
    a, b = server.issue_tokens(account="loja-a"), server.issue_tokens(account="loja-b")
    assert admin(server, "accounts/loja-a/revoke_user", {}).status_code == 200
    r = get(server, a["access_token"], "/nfe")
    assert r.status_code == 401 and r.json() == INVALID_TOKEN
    assert token_call(server, {"grant_type": "refresh_token", "refresh_token": a["refresh_token"]}).status_code == 400
    assert get(server, b["access_token"], "/nfe").status_code == 200
    # The account itself can authorize again; its new pair works.
    fresh = token_call(server, {"grant_type": "authorization_code", "code": authorize(server, "loja-a")}).json()
    assert get(server, fresh["access_token"], "/nfe").status_code == 200
    # Expiring one account's access tokens leaves the other's alone.
    admin(server, "accounts/loja-b/expire_access_tokens", {})
    assert get(server, b["access_token"], "/nfe").status_code == 401
    assert get(server, fresh["access_token"], "/nfe").status_code == 200


def test_rate_limits_are_per_account(two):
    server = two()  # 3 req/s each
    a, b = server.issue_tokens(account="loja-a")["access_token"], server.issue_tokens(account="loja-b")["access_token"]
    started = time.monotonic()
    codes_a = [get(server, a, "/nfe").status_code for _ in range(5)]
    codes_b = [get(server, b, "/nfe").status_code for _ in range(3)]
    assert time.monotonic() - started < 0.9, "too slow to test a 1 s window"
    assert codes_a == [200, 200, 200, 429, 429] and codes_b == [200, 200, 200]
    stats = server.stats()
    assert stats["accounts"]["loja-a"]["responses_429_rate_limit"] == 2
    assert stats["accounts"]["loja-b"]["responses_429"] == 0
    assert stats["accounts"]["loja-a"]["max_requests_in_any_1s"] == 3
    assert stats["max_requests_in_any_1s"] == 6  # the totals: both accounts together


def test_daily_limit_per_account(two):
    server = two(a={"rate_per_s": 1000, "daily_limit": 5}, b={"rate_per_s": 1000})
    a, b = server.issue_tokens(account="loja-a")["access_token"], server.issue_tokens(account="loja-b")["access_token"]
    assert admin(server, "accounts/loja-a/exhaust_daily_limit", {}).json()["daily_used"] == 5
    r = get(server, a, "/nfe")
    assert r.status_code == 429 and r.json()["error"]["period"] == "day" and r.json()["error"]["limit"] == 5
    assert [get(server, b, "/nfe").status_code for _ in range(6)] == [200] * 6
    assert admin(server, "accounts/loja-b/config").json()["daily_limit"] == 120000
    admin(server, "accounts/loja-a/reset_daily_limit", {})
    assert get(server, a, "/nfe").status_code == 200


def test_ip_rules_count_every_account(two):
    server = two(a={"rate_per_s": 1000}, b={"rate_per_s": 1000})
    a, b = server.issue_tokens(account="loja-a"), server.issue_tokens(account="loja-b")
    session = requests.Session()

    def errors(token: str, n: int) -> list[int]:
        return [session.get(server.api_base + "/nope", headers={"Authorization": f"Bearer {token}"},
                            timeout=5).status_code for _ in range(n)]

    assert set(errors(a["access_token"], 150)) == {404}
    assert set(errors(b["access_token"], 149)) == {404}
    assert not server.stats()["ip_blocked"]
    errors(b["access_token"], 1)  # the 300th error in 10 s from this IP, whichever account sent it
    stats = server.stats()
    assert stats["ip_blocked"] and stats["max_errors_in_any_10s"] == 300
    assert [stats["accounts"][n]["max_errors_in_any_10s"] for n in ("loja-a", "loja-b")] == [150, 150]
    assert get(server, a["access_token"], "/nfe").status_code == 403
    assert get(server, b["access_token"], "/nfe").status_code == 403
    server.app.unblock()
    server.reset_stats()
    # The token endpoint's 20 calls / 60 s: shared too.
    for i in range(20):
        pair = a if i % 2 else b
        r = token_call(server, {"grant_type": "refresh_token", "refresh_token": pair["refresh_token"]})
        assert r.status_code == 200, (i, r.text)
        if i % 2:
            a = r.json()
        else:
            b = r.json()
    assert token_call(server, {"grant_type": "refresh_token", "refresh_token": a["refresh_token"]}).status_code == 403


def test_faults_per_account(two):
    server = two(a={"rate_per_s": 1000}, b={"rate_per_s": 1000})
    a, b = server.issue_tokens(account="loja-a")["access_token"], server.issue_tokens(account="loja-b")["access_token"]
    assert admin(server, "accounts/loja-a/faults", {"status_5xx_share": 1.0}).status_code == 200
    assert get(server, a, "/nfe").status_code in (500, 502, 503)
    assert get(server, b, "/nfe").status_code == 200
    assert admin(server, "faults").json() == {"status_5xx_share": 1.0}  # unscoped = the default account
    assert admin(server, "accounts/loja-b/faults").json() == {}
    server.set_faults(account="loja-b", expire_token_after_n=0)
    assert get(server, b, "/nfe").status_code == 401
    server.set_faults(account="loja-a")
    assert get(server, a, "/nfe").status_code == 200


def test_unknown_account_and_bad_names(two, make_server):
    server = two()
    r = admin(server, "accounts/loja-z/truth")
    assert r.status_code == 404 and "loja-z" in r.text
    with pytest.raises(ValueError, match="Loja_A"):
        make_server(None, accounts=[SandboxAccount("Loja_A", build_profile("small", seed=1))])
    with pytest.raises(ValueError, match="twice"):
        make_server(None, accounts=[SandboxAccount("loja-a", build_profile("small", seed=1)),
                                    SandboxAccount("loja-a", build_profile("small", seed=2))])
    with pytest.raises(ValueError, match="share nfe id"):  # the same seed twice without its own id range
        make_server(None, accounts=[SandboxAccount("loja-a", build_profile("small", seed=1)),
                                    SandboxAccount("loja-b", build_profile("small", seed=1))])


def test_one_account_is_the_default(make_server, small):
    server = make_server(small)
    assert admin(server, "accounts").json()["accounts"] == [DEFAULT_ACCOUNT]
    assert server.truth(account=DEFAULT_ACCOUNT) == server.truth()
    token = server.issue_tokens()["access_token"]
    assert get(server, token, "/nfe").status_code == 200
    assert server.stats()["accounts"][DEFAULT_ACCOUNT]["requests_total"] == 1
