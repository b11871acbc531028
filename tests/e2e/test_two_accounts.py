"""Two Bling accounts in one deployment (issue 14), through the real processes: both connected through the auth
function, two months backfilled for both at once, each schema equal to its own truth and holding nothing of the
other, each account's requests made with its own token and under its own 3 req/s budget; messages for an unknown
or paused account, or naming none while two are active, dropped with one ERROR; the daily message runs every
account; one account's revoked refresh token or spent daily quota parks only its own work.

The scenarios share one stack and run in file order (each starts from what the previous one left). The contract
they read is in tests/two_accounts.py.
"""
from __future__ import annotations

import contextlib
import json
import re
import time

import pytest

from local import verify
from shared import migrate
from tests.log_checks import leaked_secrets
from tests.two_accounts import (
    ACCOUNT_A,
    ACCOUNT_B,
    ACCOUNTS,
    SANDBOX_ACCOUNTS,  # the `stack` fixture (tests/conftest.py) reads it from this module
    SCHEMAS,
    LogMark,
    account_status,
    by_schema,
    forget_month,
    owner_of,
    parked,
    paused_account,
    registry,
    stored_tokens,
    throughput,
    token_problems,
    truths,
)

pytestmark = pytest.mark.slow

MONTHS = ("2026-01", "2026-02")
SETTLE = {"quiet_s": 4, "timeout_s": 150}


@pytest.fixture(scope="module")
def loaded(stack):
    """Connect both accounts through the auth function, publish both months for both at once, wait for both
    schemas to settle; keep what the load looked like from the sandbox's side."""
    mark = LogMark(stack)
    connected = {account: stack.authorize(account=account) for account in ACCOUNTS}
    approvals = {account: stack.sandbox.stats(account=account)["authorize_calls"] for account in ACCOUNTS}
    truth_of = truths(stack)
    stack.sandbox.reset_stats()
    for month in MONTHS:
        for account in ACCOUNTS:
            stack.publish("bling-schedule", {"month": month, "account": account})
    verify.wait_for_accounts(stack, by_schema(truth_of), MONTHS, **SETTLE)
    return {"connected": connected, "approvals": approvals, "truth": truth_of, "mark": mark,
            "stats": {account: stack.sandbox.stats(account=account) for account in ACCOUNTS},
            "ip_stats": stack.sandbox.stats(), "token_problems": token_problems(stack, truth_of),
            "tokens": stored_tokens(stack)}


@pytest.fixture(scope="module")
def seen_tokens(loaded):
    """Every token pair stored during the module (grown by the scenarios), for the no-secret check at the end."""
    return set(loaded["tokens"])


def connect(stack):
    return stack.postgres.connect()


def rows_in_public(conn) -> dict[str, int]:
    """Data rows left in `public` (whether the connect flow left its empty layout there or moved it away)."""
    if not verify.schema_tables(conn, "public") >= set(verify.TABLES):
        return {}
    return {table: n for table, n in verify.db_counts(conn, "public").items() if n}


def wait_for_parked(stack) -> None:
    with contextlib.suppress(TimeoutError):  # nothing parked: the assertions after it say so
        stack.wait_for_quiet(quiet_s=3, timeout_s=30, predicate=lambda: bool(parked(stack)))


def dead_letters(stack) -> dict:
    return {topic: messages for topic, messages in stack.dead_letters(timeout_s=0.3).items() if messages}


# ------------------------------------------------------------------------------------------------------------

# Every table the numbered migrations create (read from their text, independently of the runner), and the runner's.
MIGRATED_TABLES = {m.lower() for path in sorted(migrate.MIGRATIONS_DIR.glob("*.sql"))
                   for m in re.findall(r"CREATE TABLE (?:IF NOT EXISTS )?([a-z_]+)", path.read_text(), re.I)
                   } | {"schema_migrations"}


def test_both_accounts_are_connected_through_the_auth_function(stack, loaded):
    accounts = registry(stack).all(fresh=True)
    conn = connect(stack)
    try:
        for account in ACCOUNTS:
            assert accounts[account].status == "active", accounts
            assert verify.schema_tables(conn, SCHEMAS[account]) == MIGRATED_TABLES, SCHEMAS[account]
    finally:
        conn.close()
    assert loaded["approvals"] == {ACCOUNT_A: 1, ACCOUNT_B: 1}, "each company's user approves once, for itself"
    for account, status in loaded["connected"].items():  # /status as the callback left it
        assert account_status(status, account)["token_stored"] is True, status


def test_status_lists_every_account_and_never_a_token(stack, loaded):
    status = stack.auth_status()
    for account in ACCOUNTS:
        entry = account_status(status, account)
        assert entry["token_stored"] is True, entry
        assert entry["reauth_required"] is False, entry
        assert entry["expires_at"], entry
        assert "last_daily_run_ok_at" in entry, entry
        assert entry["parked"] == 0, entry
    text = json.dumps(status)
    assert loaded["tokens"], "no token was stored: the check would prove nothing"
    assert [t for t in loaded["tokens"] if t in text] == []


def test_each_schema_equals_its_own_truth_and_public_holds_nothing(stack, loaded):
    conn = connect(stack)
    try:
        for account in ACCOUNTS:
            report = verify.verify(conn, loaded["truth"][account], MONTHS, schema=SCHEMAS[account])
            assert report.ok, report.summary()
            assert report.counts["nfe"] == report.expected_counts["nfe"] > 0
            assert verify.duplicate_report(conn, schema=SCHEMAS[account]) == []
        assert rows_in_public(conn) == {}
    finally:
        conn.close()


def test_no_row_of_one_account_in_the_other(stack, loaded):
    conn = connect(stack)
    try:
        assert verify.foreign_rows(conn, loaded["truth"][ACCOUNT_B], schema=SCHEMAS[ACCOUNT_A]) == []
        assert verify.foreign_rows(conn, loaded["truth"][ACCOUNT_A], schema=SCHEMAS[ACCOUNT_B]) == []
    finally:
        conn.close()


def test_each_account_only_ever_sent_its_own_token(stack, loaded):
    """The sandbox answers from the company the token belongs to: another company's record with it is a 404, an
    unknown token a 401; neither happened, and no request asked for a record of the other account."""
    assert loaded["token_problems"] == []
    for account in ACCOUNTS:
        expected = verify.expected_from_truth(loaded["truth"][account], MONTHS)
        assert loaded["stats"][account]["requests_by_kind"]["nfe_detail"] >= len(expected.nfe), loaded["stats"]


def test_each_account_has_its_own_rate_budget_and_both_ran_at_once(stack, loaded):
    stats, ip = loaded["stats"], loaded["ip_stats"]
    for account in ACCOUNTS:
        assert stats[account]["max_requests_in_any_1s"] <= 3, (account, stats[account])
    first_end = min(stats[a]["last_request_at"] for a in ACCOUNTS)
    last_start = max(stats[a]["first_request_at"] for a in ACCOUNTS)
    assert last_start < first_end, "the accounts were loaded one after the other, not at once"
    # Over 3 in one second from the IP: the accounts did not share one budget.
    assert ip["max_requests_in_any_1s"] > 3, ip
    assert ip["ip_blocked"] is False, ip


def test_log_lines_carry_the_account_they_work_for(stack, loaded):
    lines = loaded["mark"].lines(["scheduler", "lister", "detail", "enrich"])
    for function in ("scheduler", "lister", "detail", "enrich"):
        for account in ACCOUNTS:
            assert any(e.get("account") == account for e in lines if e["_function"] == function), \
                f"no {function} log line with account={account}"
    wrong = [e for e in lines if "nfe_id" in e
             and e.get("account") != owner_of(loaded["truth"], "nfe", int(e["nfe_id"]))]
    assert wrong == [], wrong[:5]
    unbound = [e for e in lines if ("window" in e or "run_id" in e) and e.get("account") not in ACCOUNTS]
    assert unbound == [], unbound[:5]


def test_no_errors_and_no_dead_letters_after_the_load(stack, loaded):
    assert loaded["mark"].errors() == []
    assert dead_letters(stack) == {}


def test_messages_for_an_unknown_or_paused_account_or_for_none_are_dropped_with_one_error_each(stack, loaded):
    paused_account(stack, "loja-p")
    conn = connect(stack)
    try:
        before = {account: verify.db_counts(conn, SCHEMAS[account]) for account in ACCOUNTS}
    finally:
        conn.close()
    stack.sandbox.reset_stats()
    mark = LogMark(stack)
    stack.publish("bling-schedule", {"month": "2026-01", "account": "loja-x"})
    stack.publish("bling-schedule", {"month": "2026-01", "account": "loja-p"})
    stack.publish("bling-schedule", {"month": "2026-01"})  # names none while two accounts are active
    with contextlib.suppress(TimeoutError):  # fewer than 3 ERRORs: the assertions below say what happened
        stack.wait_for_quiet(quiet_s=3, timeout_s=30, predicate=lambda: len(mark.errors()) >= 3)
    time.sleep(2)  # anything run by mistake would show up as calls and lines by now
    errors = mark.errors()
    assert len(errors) == 3, errors
    assert {e["_function"] for e in errors} == {"scheduler"}, errors
    for slug in ("loja-x", "loja-p"):
        assert len([e for e in errors if slug in json.dumps(e)]) == 1, (slug, errors)
    assert stack.sandbox.stats()["requests_total"] == 0, stack.sandbox.stats()
    conn = connect(stack)
    try:
        assert {account: verify.db_counts(conn, SCHEMAS[account]) for account in ACCOUNTS} == before
        assert rows_in_public(conn) == {}
        for slug in ("bling_loja_x", "bling_loja_p"):
            tables = verify.schema_tables(conn, slug)
            assert not tables or set(verify.db_counts(conn, slug).values()) == {0}, slug
    finally:
        conn.close()
    assert dead_letters(stack) == {}


def test_the_daily_message_runs_every_active_account(stack, loaded):
    stack.sandbox.reset_stats()
    mark = LogMark(stack)
    stack.publish("bling-schedule", {"daily": True})

    def every_account_ran() -> bool:
        status = stack.auth_status()
        return all(account_status(status, a).get("last_daily_run_ok_at") for a in ACCOUNTS)

    with contextlib.suppress(TimeoutError):  # the assertions below say which account did not run
        stack.wait_for_quiet(quiet_s=3, timeout_s=45, predicate=every_account_ran)
    status = stack.auth_status()
    assert [a for a in ACCOUNTS if not account_status(status, a).get("last_daily_run_ok_at")] == [], status
    for account in ACCOUNTS:
        assert stack.sandbox.stats(account=account)["requests_by_kind"]["nfe_list"] >= 1, account
    assert mark.errors() == []
    assert dead_letters(stack) == {}


def test_a_revoked_refresh_token_parks_only_that_accounts_work(stack, loaded, seen_tokens):
    """A's refresh token is revoked (and its access token expired) before January runs again for both: A's work
    is parked with A's name on it, B's January is fetched again and completes; re-authorizing A releases A's
    parked work and A's January completes."""
    forgotten = {account: forget_month(stack, account, "2026-01") for account in ACCOUNTS}
    assert all(forgotten.values()), forgotten
    stack.sandbox.reset_stats()
    stack.sandbox.admin("revoke_refresh_tokens", {}, account=ACCOUNT_A)
    stack.sandbox.admin("expire_access_tokens", {}, account=ACCOUNT_A)
    mark = LogMark(stack)
    for account in ACCOUNTS:
        stack.publish("bling-schedule", {"month": "2026-01", "account": account})
    truth_b = {SCHEMAS[ACCOUNT_B]: loaded["truth"][ACCOUNT_B]}
    verify.wait_for_accounts(stack, truth_b, MONTHS, **SETTLE)
    wait_for_parked(stack)
    held = parked(stack)
    assert held and {p.get("account") for p in held} == {ACCOUNT_A}, held
    status = stack.auth_status()
    assert account_status(status, ACCOUNT_A)["reauth_required"] is True, status
    assert account_status(status, ACCOUNT_A)["parked"] == len(held), status
    assert account_status(status, ACCOUNT_B)["reauth_required"] is False, status
    errors = mark.errors()
    assert len(errors) == 1 and errors[0].get("event") == "bling_reauthorization_required", errors
    assert errors[0].get("account") == ACCOUNT_A, errors
    assert stack.sandbox.stats(account=ACCOUNT_B)["requests_by_kind"]["nfe_detail"] >= forgotten[ACCOUNT_B]
    assert stack.sandbox.stats(account=ACCOUNT_A)["requests_by_kind"]["nfe_detail"] == 0
    assert dead_letters(stack) == {}

    stack.authorize(account=ACCOUNT_A)  # the callback releases A's parked work
    verify.wait_for_accounts(stack, by_schema(loaded["truth"]), MONTHS, **SETTLE)
    seen_tokens |= stored_tokens(stack)
    conn = connect(stack)
    try:
        for account in ACCOUNTS:
            report = verify.verify(conn, loaded["truth"][account], MONTHS, schema=SCHEMAS[account])
            assert report.ok, report.summary()
    finally:
        conn.close()
    assert parked(stack) == []
    assert account_status(stack.auth_status(), ACCOUNT_A)["reauth_required"] is False
    assert token_problems(stack, loaded["truth"], allowed_statuses=(401,)) == []  # A's expired token: 401s
    assert dead_letters(stack) == {}


def test_one_account_at_its_daily_limit_parks_only_its_work_and_does_not_slow_the_other(stack, loaded):
    """A's daily quota is spent before February runs again for both: A stops at its first call and its work is
    parked; B fetches its February at its own full rate."""
    for account in ACCOUNTS:
        assert forget_month(stack, account, "2026-02") > 0
    stack.sandbox.reset_stats()
    stack.sandbox.exhaust_daily_limit(account=ACCOUNT_A)
    try:
        for account in ACCOUNTS:
            stack.publish("bling-schedule", {"month": "2026-02", "account": account})
        verify.wait_for_accounts(stack, {SCHEMAS[ACCOUNT_B]: loaded["truth"][ACCOUNT_B]}, MONTHS, **SETTLE)
        wait_for_parked(stack)
        held = parked(stack)
        a, b = (stack.sandbox.stats(account=account) for account in ACCOUNTS)
    finally:
        stack.sandbox.reset_daily_limit(account=ACCOUNT_A)
    assert held and {p.get("account") for p in held} == {ACCOUNT_A}, held
    assert a["requests_by_kind"]["nfe_detail"] == 0 and a["requests_total"] <= 5, a
    assert b["max_requests_in_any_1s"] <= 3, b
    baseline = throughput(loaded["stats"][ACCOUNT_B])
    assert throughput(b) >= 0.5 * baseline, (throughput(b), baseline, b)
    assert account_status(stack.auth_status(), ACCOUNT_B)["parked"] == 0
    assert dead_letters(stack) == {}


def test_no_secret_in_any_function_log(stack, loaded, seen_tokens):
    text = stack.log_text(include_infra=False)
    assert text and len(seen_tokens) >= 4, "fewer than two token pairs collected: the check would prove nothing"
    found = leaked_secrets(stack, text, seen_tokens)
    assert found == [], f"secrets in logs: {found}"
