"""The Bling client through real HTTP to the sandbox, with the Firestore tick ledger and token store."""
from __future__ import annotations

import decimal
import time

import pytest

from local.stack.base import DEFAULT_ACCOUNT
from shared import firestore_client, topology
from shared.bling import client as bling_client
from shared.bling.client import BlingClient, count_calls
from shared.bling.errors import (
    BlingDailyLimit,
    BlingNotFound,
    BlingPermanentError,
    BlingReauthorizationRequired,
    BlingRetryableError,
)
from shared.bling.retry_policy import POLICY, scaled
from tests.integration.bling.helpers import log_lines, reset_bling_state, run_concurrently, token_doc
from tests.integration.process_deps import account_client, current_deps, new_client, new_token_store

FAST = scaled(POLICY, 0.02)  # the same attempt counts, waits of 10-160 ms


def _some_nfe_id(server) -> int:
    return sorted(server.truth()["nfe"])[0]


def test_get_returns_the_body_with_exact_decimals(bling):
    nfe_id = _some_nfe_id(bling)

    body = account_client().get(f"/nfe/{nfe_id}")

    truth = bling.truth()["nfe"][nfe_id]
    assert body["data"]["valorNota"] == truth["valorNota"]
    assert isinstance(body["data"]["valorNota"], decimal.Decimal)


def test_list_params_as_pairs_reach_bling(bling):
    sku = next(p["codigo"] for p in bling.truth()["products"].values() if p.get("codigo"))

    body = account_client().get("/produtos", [("codigos[]", sku), ("criterio", "5")])

    assert [p["codigo"] for p in body["data"]] == [sku]


def test_count_calls_counts_requests_made_inside_the_block_only(bling):
    nfe_id = _some_nfe_id(bling)
    account_client().get(f"/nfe/{nfe_id}")

    with count_calls() as outer:
        account_client().get(f"/nfe/{nfe_id}")
        with count_calls() as inner:
            account_client().get("/nfe", {"pagina": 1})

    assert (outer.requests, outer.throttled) == (2, 0)
    assert (inner.requests, inner.throttled) == (1, 0)


def test_every_request_logs_one_line_without_secrets(bling, capsys):
    capsys.readouterr()
    bling.expire_access_tokens()  # forces a refresh: new tokens pass through the process too

    account_client().get(f"/nfe/{_some_nfe_id(bling)}")

    out = capsys.readouterr().out
    requests = [line for line in log_lines(out) if line.get("event") == "bling_request"]
    assert [(r["status"], r["attempt"]) for r in requests] == [(401, 1), (200, 2)]
    assert {"method", "path", "duration_ms"} <= set(requests[-1])
    doc = token_doc()
    for secret in (doc["access_token"], doc["refresh_token"], "test-client-secret-0123456789"):
        assert secret not in out
    assert "Bearer" not in out and "?" not in "".join(r["path"] for r in requests)


def test_invalid_token_causes_exactly_one_refresh_and_one_retry(bling):
    bling.expire_access_tokens()

    with count_calls() as calls:
        body = account_client().get(f"/nfe/{_some_nfe_id(bling)}")

    assert body["data"]
    assert calls.requests == 2
    assert bling.stats()["token_calls"] == 1
    assert token_doc()["version"] == 2


class _StoreOfDeadTokens:
    """A token store whose tokens Bling never accepts (as after a revocation the store cannot see)."""

    def __init__(self):
        self.refreshes = 0

    def get_valid_access_token(self) -> str:
        return "dead-token-1"

    def refresh_after_rejection(self, rejected_access_token: str) -> str:
        self.refreshes += 1
        return "dead-token-2"


def test_a_token_refused_again_after_the_refresh_is_kept_as_retryable_without_more_refreshes(bling):
    store = _StoreOfDeadTokens()
    with count_calls() as calls, pytest.raises(BlingRetryableError) as raised:
        new_client(store).get(f"/nfe/{_some_nfe_id(bling)}")
    assert calls.requests == 2 and store.refreshes == 1
    assert raised.value.status == 401 and raised.value.error_type == "invalid_token"


def test_429_per_second_is_retried_and_succeeds(bling):
    bling.set_faults(storm_429={"every_n": 3, "length": 2}, seed=1)  # of every 3 requests, the last 2 get a 429

    with count_calls() as calls:
        started = time.monotonic()
        body = account_client().get(f"/nfe/{_some_nfe_id(bling)}")
        account_client().get(f"/nfe/{_some_nfe_id(bling)}")

    assert body["data"]
    assert calls.throttled >= 2 and calls.requests == calls.throttled + 2
    assert time.monotonic() - started >= 1.0  # backoff of at least 1 s after a 429


def test_429_per_day_raises_without_retry_and_stops_every_instance_until_midnight(bling):
    bling.configure(daily_limit=1)
    client = account_client()
    client.get(f"/nfe/{_some_nfe_id(bling)}")

    with count_calls() as calls, pytest.raises(BlingDailyLimit):
        client.get(f"/nfe/{_some_nfe_id(bling)}")
    assert calls.requests == 1

    remembered = current_deps().collection(topology.RATE_STATE).document(f"{DEFAULT_ACCOUNT}|daily_limit").get()
    assert remembered.exists and remembered.get("until").timestamp() > time.time()
    reset_bling_state()  # another instance: nothing cached in this process
    before = bling.stats()["requests_total"]
    with count_calls() as calls, pytest.raises(BlingDailyLimit):
        account_client().get(f"/nfe/{_some_nfe_id(bling)}")
    assert calls.requests == 0 and bling.stats()["requests_total"] == before


def test_5xx_html_is_retried_then_raised_as_retryable(bling):
    bling.set_faults(status_5xx_share=1.0)

    with count_calls() as calls, pytest.raises(BlingRetryableError) as raised:
        new_client(policy=FAST).get(f"/nfe/{_some_nfe_id(bling)}")

    assert calls.requests == POLICY[bling_client.Outcome.SERVER_ERROR].max_attempts == 5
    assert raised.value.status in (500, 502, 503)


def test_5xx_then_success_returns_the_body(bling):
    bling.set_faults(status_5xx_share=0.5, seed=3)

    bodies = [new_client(policy=FAST).get(f"/nfe/{_some_nfe_id(bling)}") for _ in range(4)]

    assert all(b["data"] for b in bodies)
    assert any(s >= 500 for s in bling.stats()["responses_by_status"] for s in [int(s)])


def test_truncated_json_and_connection_resets_are_retryable(bling):
    bling.set_faults(truncated_json_share=1.0)
    with count_calls() as calls, pytest.raises(BlingRetryableError) as raised:
        new_client(policy=FAST).get(f"/nfe/{_some_nfe_id(bling)}")
    assert calls.requests == 5 and raised.value.error_type in ("invalid_json", "connection")

    bling.set_faults(reset_share=1.0)
    with count_calls() as calls, pytest.raises(BlingRetryableError):
        new_client(policy=FAST).get(f"/nfe/{_some_nfe_id(bling)}")
    assert calls.requests == 5


def test_404_is_not_found_and_not_retried(bling):
    with count_calls() as calls, pytest.raises(BlingNotFound) as raised:
        account_client().get("/nfe/999999999999")
    assert calls.requests == 1 and raised.value.status == 404


def test_400_is_permanent_with_blings_error_body(bling):
    with count_calls() as calls, pytest.raises(BlingPermanentError) as raised:
        account_client().get("/nfe", {"limite": 500})
    assert calls.requests == 1
    assert raised.value.status == 400 and raised.value.error_type and raised.value.description


def test_without_authorization_the_client_asks_for_one(bling_server):
    with count_calls() as calls, pytest.raises(BlingReauthorizationRequired):
        account_client().get("/nfe")
    assert calls.requests == 0


def test_concurrent_workers_stay_under_the_account_budget(bling):
    bling.reset_stats()
    ids = sorted(bling.truth()["nfe"])

    def work(i: int) -> int:
        with count_calls() as calls:
            for k in range(3):
                account_client().get(f"/nfe/{ids[(i * 3 + k) % len(ids)]}")
        return calls.requests

    started = time.monotonic()
    results = run_concurrently(6, work)
    elapsed = time.monotonic() - started

    assert results == [3] * 6, results
    stats = bling.stats()
    assert stats["responses_429"] == 0
    assert stats["max_requests_in_any_1s"] <= 3
    assert elapsed >= 17 / 2.8 - 0.5  # 18 sends at 2.8/s take at least 17 ticks


def test_429s_that_outlive_the_retries_are_raised_as_retryable(bling):
    bling.set_faults(storm_429=1.0)

    with count_calls() as calls, pytest.raises(BlingRetryableError) as raised:
        new_client(policy=FAST).get(f"/nfe/{_some_nfe_id(bling)}")

    assert calls.requests == calls.throttled == POLICY[bling_client.Outcome.RATE_SECOND].max_attempts == 6
    assert raised.value.status == 429


def test_a_token_replaced_by_another_instance_is_picked_up_without_a_token_call(bling):
    bling.configure(refresh_revokes_access=True)

    ours = new_client(new_token_store())
    ours.get("/nfe")  # caches the current access token in our process
    other = new_token_store()
    other.refresh_after_rejection(other.get_valid_access_token())  # another instance refreshes: ours is revoked
    bling.reset_stats()

    with count_calls() as calls:
        assert ours.get("/nfe")["data"]

    assert calls.requests == 2  # 401 invalid_token, then the stored newer token
    assert bling.stats()["token_calls"] == 0
