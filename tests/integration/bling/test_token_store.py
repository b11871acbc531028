"""The token store against the real Firestore emulator and the sandbox's token endpoint (single-use refresh tokens,
20-calls-in-60-s IP block)."""
from __future__ import annotations

import datetime
import time

import pytest

from shared import firestore_client, topology
from shared.bling import oauth
from shared.bling.errors import BlingReauthorizationRequired, BlingRetryableError
from tests.integration.bling.helpers import (
    log_lines,
    refresh_in_processes,
    run_concurrently,
    set_env,
    store_pair,
    token_doc,
)
from tests.integration.process_deps import new_token_store, token_document

UTC = datetime.UTC


def test_a_token_far_from_expiry_is_used_without_calling_the_token_endpoint(bling):
    token = new_token_store().get_valid_access_token()

    assert token == token_doc()["access_token"]
    assert bling.stats()["token_calls"] == 0


def test_ten_workers_with_an_expiring_token_cause_exactly_one_refresh(bling_server):
    old = store_pair(bling_server, expires_in=300)  # inside the 600 s refresh margin
    bling_server.reset_stats()

    started = time.monotonic()
    results = run_concurrently(10, lambda i: new_token_store().get_valid_access_token())
    elapsed = time.monotonic() - started

    assert not [r for r in results if isinstance(r, Exception)], results
    assert len(set(results)) == 1 and results[0] != old["access_token"]
    stats = bling_server.stats()
    assert stats["token_calls"] == 1  # one call, so no invalid_grant from a spent refresh token
    doc = token_doc()
    assert doc["version"] == 2 and doc["access_token"] == results[0]
    assert doc["lease_holder"] is None and doc["reauth_required"] is False
    assert elapsed < 15, f"10 workers took {elapsed:.1f} s"


def test_separate_processes_with_an_expiring_token_cause_exactly_one_refresh(bling_server):
    old = store_pair(bling_server, expires_in=300)
    bling_server.reset_stats()

    answers = refresh_in_processes(5)  # 10 threads above; processes cost ~1.5 s of imports each

    assert [a for a in answers if a[0] != "ok"] == []
    tokens = {token for _, token in answers}
    assert len(tokens) == 1 and old["access_token"] not in tokens
    assert bling_server.stats()["token_calls"] == 1
    assert token_doc()["version"] == 2


def test_a_worker_waits_for_a_live_lease_and_takes_over_when_its_holder_dies(bling_server):
    set_env(BLING_TOKEN_LEASE_S=2)
    store_pair(bling_server, expires_in=300)
    ref = token_document()
    ref.update({"lease_holder": "dead-instance",
                "lease_until": datetime.datetime.now(tz=UTC) + datetime.timedelta(seconds=1.5)})
    bling_server.reset_stats()

    started = time.monotonic()
    token = new_token_store().get_valid_access_token()

    assert time.monotonic() - started >= 1.0  # it waited for the dead holder's lease to run out
    assert bling_server.stats()["token_calls"] == 1
    assert token_doc()["access_token"] == token and token_doc()["version"] == 2


def test_a_refused_refresh_token_that_a_sibling_already_replaced_is_not_a_reauthorization(bling_server):
    store_pair(bling_server, expires_in=300)
    store = new_token_store()
    stale = store._read()
    # Another instance refreshes (spending the refresh token) and stores the new pair.
    new_token_store().refresh_after_rejection(stale.access_token)
    bling_server.reset_stats()

    token = store._refresh_under_lease(stale, holder="late-instance")  # Bling answers invalid_grant

    assert token == token_doc()["access_token"]
    assert token_doc()["reauth_required"] is False
    assert bling_server.stats()["token_calls"] == 1


def test_a_late_writer_never_overwrites_a_newer_pair(bling_server):
    store_pair(bling_server, expires_in=300)
    store = new_token_store()
    seen = store._read()
    newer = bling_server.issue_tokens(jwt=True)
    new_token_store().store_authorization(newer)  # version 2, written while "we" were calling Bling
    ours = oauth.parse_token_response(bling_server.issue_tokens(jwt=True))

    token = store._write_pair(seen.version, ours, time.time())

    assert token == newer["access_token"]
    assert token_doc()["access_token"] == newer["access_token"] and token_doc()["version"] == 2


def test_invalid_grant_marks_reauthorization_once_and_stops_calling_the_token_endpoint(bling_server, capsys):
    store_pair(bling_server, expires_in=300)
    bling_server.revoke_refresh_tokens()
    bling_server.reset_stats()
    capsys.readouterr()

    results = run_concurrently(3, lambda i: new_token_store().get_valid_access_token())
    again = run_concurrently(2, lambda i: new_token_store().get_valid_access_token())

    assert all(isinstance(r, BlingReauthorizationRequired) for r in results + again), results + again
    assert bling_server.stats()["token_calls"] == 1
    doc = token_doc()
    assert doc["reauth_required"] is True and doc["last_error"].startswith("invalid_grant")
    errors = [line for line in log_lines(capsys.readouterr().out) if line["severity"] == "ERROR"]
    assert len(errors) == 1 and "re-authorization is required" in errors[0]["message"]
    assert "/start" in errors[0]["message"]


def test_a_new_authorization_clears_reauth_required(bling_server):
    store_pair(bling_server, expires_in=300)
    token_document().update({"reauth_required": True})

    pair = store_pair(bling_server)

    assert new_token_store().get_valid_access_token() == pair["access_token"]
    status = new_token_store().status()
    assert status["reauth_required"] is False and status["token_stored"] is True and status["version"] == 2


def test_no_stored_authorization_asks_for_one(bling_server):
    with pytest.raises(BlingReauthorizationRequired):
        new_token_store().get_valid_access_token()
    status = new_token_store().status()
    assert status["token_stored"] is False and status["reauth_required"] is True
    assert status["reauthorize_url"].endswith("/start?account=loja-teste")
    assert bling_server.stats()["token_calls"] == 0


def test_the_per_process_guard_caps_token_calls_per_minute(bling_server):
    set_env(BLING_TOKEN_CALLS_PER_MIN=2)
    store_pair(bling_server)
    bling_server.reset_stats()
    store = new_token_store()

    store.refresh_after_rejection(store.get_valid_access_token())
    store.refresh_after_rejection(store.get_valid_access_token())
    with pytest.raises(BlingRetryableError) as refused:
        store.refresh_after_rejection(store.get_valid_access_token())

    assert refused.value.error_type == "token_call_guard"
    assert bling_server.stats()["token_calls"] == 2
    assert token_doc()["lease_holder"] is None  # the refused attempt gave its lease back


def test_status_never_contains_a_token(bling):
    status = new_token_store().status()

    text = repr(status)
    doc = token_doc()
    assert doc["access_token"] not in text and doc["refresh_token"] not in text
    assert status["token_stored"] is True and status["expires_in_s"] > 20000
