"""Issue 14: one auth function connects every account. The start page takes the account slug, the OAuth state
carries it (stored with the state, never taken from the callback's URL), the callback stores the pair for that
account and makes it active, and /status lists every account without a token.

Real auth function (functions-framework's test client: one client = one browser), Firestore emulator, sandbox."""
from __future__ import annotations

import urllib.parse
from typing import Any

from shared import parking, topology
from shared.account_registry import AccountStatus
from shared.messages import PubSubMessage
from tests.integration.auth.flow import ADMIN_KEY, authorize, authorize_url, bearer, consent, operator_start, status
from tests.integration.auth.test_auth_function import auth, auth_app, bling_server
from tests.integration.bling.helpers import log_lines
from tests.integration.process_deps import current_deps, parked_collection


def _record(account: str) -> Any:
    return current_deps().accounts.get(account, fresh=True)


def _state_docs() -> list[dict[str, Any]]:
    return [snap.to_dict() for snap in current_deps().collection(topology.OAUTH_STATES).stream()]


def test_start_for_a_new_slug_registers_it_pending_and_the_callback_makes_it_active(auth, bling_server):
    url = authorize_url(auth, account="lojas-stilli")

    assert _record("lojas-stilli").status is AccountStatus.PENDING
    assert [s["account"] for s in _state_docs()] == ["lojas-stilli"]  # the state carries the account
    assert "lojas-stilli" not in url  # Bling's URL carries only the state

    response = auth.get("/callback?" + consent(url))

    assert response.status_code == 200 and b"lojas-stilli" in response.data
    assert _record("lojas-stilli").status is AccountStatus.ACTIVE
    entry = status(auth, "lojas-stilli")
    assert entry["account"] == "lojas-stilli" and entry["status"] == "active"
    assert entry["token_stored"] is True and entry["reauth_required"] is False
    assert current_deps().account("lojas-stilli").client.get("/nfe")["data"]


def test_a_bad_slug_gets_a_clear_400_and_writes_nothing(auth, bling_server):
    for bad in ("Lojas", "lojas_stilli", "ab", "lojas--x", "a" * 41):
        response = operator_start(auth, account=bad)
        assert response.status_code == 400, (bad, response.status_code)
        assert b"account id" in response.data and (b"slug" in response.data or b"characters" in response.data)
        assert "Location" not in response.headers
    hostile = operator_start(auth, account="<script>x")
    assert hostile.status_code == 400 and b"<script>" not in hostile.data
    bad_status = auth.get("/status?account=NOPE", headers=bearer())
    assert bad_status.status_code == 400
    assert auth.get("/status?account=nobody-here", headers=bearer()).status_code == 404
    assert _state_docs() == [] and current_deps().accounts.all(fresh=True) == {}


def test_the_key_form_carries_the_account_it_was_opened_for(auth, bling_server):
    page = auth.get("/start?account=lojas-stilli")

    assert page.status_code == 401
    assert b'name="account" value="lojas-stilli"' in page.data  # the browser's POST names it again


def test_with_several_accounts_start_requires_the_slug(auth, bling_server):
    for account in ("loja-a", "loja-b"):
        assert authorize(auth, account=account).status_code == 200  # each its own pair: no confirmation asked

    response = operator_start(auth, account=None)

    assert response.status_code == 400 and b"loja-a" in response.data and b"loja-b" in response.data
    assert "Location" not in response.headers


def test_with_no_account_start_without_a_slug_asks_for_one(auth, bling_server):
    response = operator_start(auth, account=None)

    assert response.status_code == 400 and b"no account yet" in response.data and b"account=" in response.data
    assert _state_docs() == [] and current_deps().accounts.all(fresh=True) == {}
    shown = status(auth)
    assert shown["accounts"] == [] and shown["token_stored"] is False and shown["reauth_required"] is True


def test_with_one_account_start_without_a_slug_is_that_account(auth, bling_server):
    assert authorize(auth, account="loja-a").status_code == 200

    asked = operator_start(auth, account=None)  # today's single-account command, no slug

    assert asked.status_code == 409 and b"loja-a" in asked.data  # that account's working authorization
    assert authorize(auth, confirm=True, account=None).status_code == 200
    assert status(auth, "loja-a")["version"] == 2


def test_a_callback_stores_the_pair_only_for_the_account_its_state_was_issued_for(auth, bling_server, capsys):
    assert authorize(auth, account="loja-a").status_code == 200
    version_a = status(auth, "loja-a")["version"]
    url = authorize_url(auth, account="loja-b")
    query = dict(urllib.parse.parse_qsl(consent(url)))
    capsys.readouterr()

    # Whoever edits the callback URL cannot redirect the pair: the account is the state's, not the query's.
    response = auth.get("/callback?" + urllib.parse.urlencode({**query, "account": "loja-a"}))

    assert response.status_code == 200 and b"loja-b" in response.data
    assert _record("loja-b").status is AccountStatus.ACTIVE
    assert status(auth, "loja-a")["version"] == version_a  # A's pair untouched
    assert status(auth, "loja-b")["token_stored"] is True
    stored = [e for e in log_lines(capsys.readouterr().out) if e.get("event") == "auth_authorized"]
    assert [e["account"] for e in stored] == ["loja-b"]


def test_a_state_edited_to_another_account_is_refused_before_the_token_endpoint(auth, bling_server):
    url = authorize_url(auth, account="loja-b")
    query = dict(urllib.parse.parse_qsl(consent(url)))
    current_deps().collection(topology.OAUTH_STATES).document(query["state"]).update({"account": "Not A Slug"})
    bling_server.reset_stats()

    response = auth.get("/callback?" + urllib.parse.urlencode(query))

    assert response.status_code == 400
    assert bling_server.stats()["token_calls"] == 0
    assert _record("loja-b").status is AccountStatus.PENDING


def test_the_callback_releases_that_accounts_parked_work_after_it_is_active(auth, pubsub_topology):
    parking.park(parked_collection(), topology.NFE.topic,
                 PubSubMessage(data=b'{"account": "loja-a", "ids": [1]}', attributes={"account": "loja-a"},
                               message_id="m-1"), reason="ReauthorizationRequired", account="loja-a")
    parking.park(parked_collection(), topology.NFE.topic,
                 PubSubMessage(data=b'{"account": "loja-b", "ids": [2]}', attributes={"account": "loja-b"},
                               message_id="m-2"), reason="DailyLimitReached", account="loja-b")

    assert authorize(auth, account="loja-a").status_code == 200

    assert pubsub_topology.pull_data(topology.NFE.topic) == [{"account": "loja-a", "ids": [1]}]
    assert [s.id for s in parked_collection().stream()] == ["m-2"]  # another account's reason still holds


def test_status_lists_every_account_and_never_a_token(auth, bling_server):
    assert authorize(auth, account="loja-a").status_code == 200
    operator_start(auth, account="loja-b")  # pending: started, never approved
    current_deps().accounts.set_status("loja-a", AccountStatus.PAUSED, "client on holiday")
    parking.park(parked_collection(), topology.NFE.topic,
                 PubSubMessage(data=b"{}", attributes={"account": "loja-a"}, message_id="p-1"), reason="X")

    response = auth.get("/status", headers=bearer())

    assert response.status_code == 200
    shown = response.get_json()
    entries = {e["account"]: e for e in shown["accounts"]}
    assert sorted(entries) == ["loja-a", "loja-b"] and shown["account_count"] == 2
    assert entries["loja-a"]["status"] == "paused" and entries["loja-a"]["status_reason"] == "client on holiday"
    assert entries["loja-a"]["token_stored"] is True and entries["loja-a"]["expires_at"]
    assert entries["loja-a"]["parked"] == 1 and entries["loja-b"]["parked"] == 0
    assert entries["loja-b"]["status"] == "pending" and entries["loja-b"]["reauth_required"] is True
    assert entries["loja-b"]["reauthorize_url"].endswith("/start?account=loja-b")
    assert "token_stored" not in shown  # several accounts: no single account's fields at the top level
    stored = [snap.to_dict() for snap in current_deps().collection(topology.OAUTH).stream()]
    secrets = [doc[name] for doc in stored for name in ("access_token", "refresh_token") if doc.get(name)]
    assert secrets
    for secret in (*secrets, ADMIN_KEY, "test-client-secret-0123456789"):
        assert secret.encode() not in response.data
