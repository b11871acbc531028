"""The chaos scenarios about tokens, budgets and parking (tests/chaos/test_chaos.py), with two Bling accounts in
one deployment (issue 14): each ends with every account's schema equal to its own truth, holding no row of the
other, no duplicate, and no dead letter; a fault on one account's token touches that account only, and the IP
rules, which are shared by every account, are never tripped.

One stack for the module (scaled ×10 like test_chaos.py: 30 req/s per account in the sandbox, 28/s budget);
the scenarios run in file order. The contract they read is in tests/two_accounts.py.
"""
from __future__ import annotations

import time

import pytest

from tests.chaos.conftest import MONTHS, AccountsChaos
from tests.chaos.reliability import record
from tests.chaos.test_chaos import no_secret_in_any_log, unexpected_errors
from tests.two_accounts import ACCOUNT_A, ACCOUNT_B, ACCOUNTS, token_problems
from tests.two_accounts import SANDBOX_ACCOUNTS as SANDBOX_ACCOUNTS  # the `chaos` fixture reads it from here

pytestmark = [pytest.mark.chaos, pytest.mark.slow]


def every_account_equal_to_truth(chaos: AccountsChaos, months=MONTHS, accounts=ACCOUNTS) -> dict:
    reports, problems, dead = chaos.check_accounts(months, accounts)
    for account in accounts:
        assert reports[account].ok, reports[account].summary()
        assert problems[account] == [], (account, problems[account])
    assert dead == {}, f"dead letters: {dead}"
    return reports


def of_account(lines, account: str) -> list[dict]:
    return [e for e in lines if e.get("account") == account]


# ------------------------------------------------------------------------------------------------------------

def test_two_accounts_bling_5xx_429_resets_and_truncated_json_never_trip_the_ip_block(chaos: AccountsChaos):
    """Both accounts under faults at once: the IP's totals (what Bling blocks on) stay under its rules."""
    chaos.begin()
    for seed, account in enumerate(ACCOUNTS, start=6):
        chaos.stack.sandbox.faults({"status_5xx_share": 0.08, "storm_429": {"every_n": 40, "length": 4},
                                    "reset_share": 0.03, "truncated_json_share": 0.04, "seed": seed},
                                   account=account)
    chaos.publish_months()
    waited = chaos.settle(timeout_s=300)
    ip = chaos.stats()  # the IP's view: every account's requests together
    for account in ACCOUNTS:
        chaos.stack.sandbox.faults({}, account=account)
    reports = every_account_equal_to_truth(chaos)
    assert token_problems(chaos.stack, chaos.truths) == []
    assert ip["ip_blocked"] is False, ip
    assert ip["max_errors_in_any_10s"] < 300, ip
    assert ip["max_requests_in_any_10s"] < 600, ip
    assert ip["token_calls_max_in_60s"] < 20, ip
    per_account = {a: ip["accounts"][a]["requests_total"] for a in ACCOUNTS}
    stored = ", ".join(f"{account}: {report.counts['nfe']} NF-e" for account, report in reports.items())
    assert all(per_account.values()), per_account
    record("two accounts: Bling 5xx, 429 storms, resets, truncated JSON",
           fault="both accounts backfilled at once, each with 8% 5xx, 4 of every 40 calls 429, 3% resets, 4% of 200 "
                 "bodies cut in half",
           outcome=f"{ip['requests_total']} requests from the IP ({per_account}); max "
                   f"{ip['max_errors_in_any_10s']} errors and {ip['max_requests_in_any_10s']} requests in any 10 s "
                   f"(block at 300/600), ip_blocked=false, {ip['token_calls_max_in_60s']} token calls/60 s; each "
                   f"schema = its truth ({stored}), "
                   "no row or token of the other account",
           ok=True, seconds=chaos.elapsed(), settle_s=round(waited, 1), requests_by_account=per_account)


def test_two_accounts_access_token_expiring_under_several_instances_is_refreshed_once_per_account(
        chaos: AccountsChaos):
    chaos.begin()
    # Phase 1: each account's access token dies after its 15th authenticated call, both accounts loading.
    for account in ACCOUNTS:
        chaos.stack.sandbox.faults({"expire_token_after_n": 15}, account=account)
    chaos.publish_months(["2026-01"])
    chaos.settle(["2026-01"])
    first = {a: chaos.account_stats(a)["token_calls"] for a in ACCOUNTS}
    assert first == {ACCOUNT_A: 1, ACCOUNT_B: 1}, first
    # Phase 2: only A's access tokens expire, by the admin endpoint, while both load February.
    for account in ACCOUNTS:
        chaos.stack.sandbox.faults({}, account=account)
        chaos.stack.sandbox.configure({"latency_s": 0.1}, account=account)
    chaos.stack.sandbox.reset_stats()
    chaos.publish_months(["2026-02"])
    chaos.wait_until(lambda: chaos.account_calls(ACCOUNT_A, "nfe_detail") >= 3, 60, "A's February details")
    chaos.stack.sandbox.admin("expire_access_tokens", {}, account=ACCOUNT_A)
    for account in ACCOUNTS:
        chaos.stack.sandbox.configure({"latency_s": 0}, account=account)
    chaos.settle()
    second = {a: chaos.account_stats(a)["token_calls"] for a in ACCOUNTS}
    assert second == {ACCOUNT_A: 1, ACCOUNT_B: 0}, second
    every_account_equal_to_truth(chaos)
    lines = chaos.lines()
    refreshed = [e for e in lines if e.get("event") == "bling_token_refreshed"]
    by_account = {a: len(of_account(refreshed, a)) for a in ACCOUNTS}
    assert by_account == {ACCOUNT_A: 2, ACCOUNT_B: 1} and len(refreshed) == 3, refreshed
    assert unexpected_errors(lines) == []
    assert token_problems(chaos.stack, chaos.truths, allowed_statuses=(401,)) == []
    rejected = {a: chaos.account_stats(a)["responses_by_status"].get("401", 0) for a in ACCOUNTS}
    # B's only 401s in February are an instance's first call with B's own January token (the pair another instance
    # refreshed in January is re-read from Firestore, not refreshed again: 0 token calls above): at most one per
    # function process that calls Bling. A's expiry costs B nothing more.
    assert rejected[ACCOUNT_B] <= len(("lister", "detail", "enrich")), rejected
    record("two accounts: access token expires under several instances",
           fault="each account's access tokens expire after its 15th call (January, both loading), then only "
                 "loja-a's by the admin endpoint in the middle of February",
           outcome=f"token endpoint called once per account per expiry (January {first}, February {second}); "
                   f"refreshes logged per account {by_account}; 401s in February {rejected}; each schema = its "
                   "truth, 0 duplicates, 0 dead letters",
           ok=True, seconds=chaos.elapsed(), token_calls_january=first, token_calls_february=second)


def test_two_accounts_refresh_token_revoked_mid_run_parks_only_that_accounts_work(chaos: AccountsChaos):
    chaos.begin()
    for account in ACCOUNTS:
        chaos.stack.sandbox.configure({"latency_s": 0.15}, account=account)
    chaos.publish_months()
    chaos.wait_until(lambda: chaos.account_calls(ACCOUNT_A, "nfe_detail") >= 3, 60, "A's details being fetched")
    chaos.stack.sandbox.admin("revoke_refresh_tokens", {}, account=ACCOUNT_A)
    chaos.stack.sandbox.admin("expire_access_tokens", {}, account=ACCOUNT_A)
    for account in ACCOUNTS:
        chaos.stack.sandbox.configure({"latency_s": 0}, account=account)
    chaos.settle(accounts=[ACCOUNT_B])  # B finishes while A's work waits
    chaos.stack.wait_for_quiet(quiet_s=4, timeout_s=120)
    parked = chaos.parked()
    status_a, status_b = chaos.account_status(ACCOUNT_A), chaos.account_status(ACCOUNT_B)
    errors = unexpected_errors(chaos.lines())
    assert parked, "nothing was parked"
    assert {p.get("account") for p in parked} == {ACCOUNT_A}, parked
    assert status_a["reauth_required"] is True and status_a["parked"] == len(parked), status_a
    assert status_b["reauth_required"] is False and status_b["parked"] == 0, status_b
    assert len(errors) == 1 and errors[0].get("event") == "bling_reauthorization_required", errors
    assert errors[0].get("account") == ACCOUNT_A, errors
    every_account_equal_to_truth(chaos, accounts=[ACCOUNT_B])
    t0 = time.monotonic()
    chaos.stack.authorize(account=ACCOUNT_A)  # the callback releases A's parked work
    waited = chaos.settle()
    reports = every_account_equal_to_truth(chaos)
    assert chaos.parked() == []
    assert chaos.account_status(ACCOUNT_A)["reauth_required"] is False
    record("two accounts: refresh token revoked mid-run",
           fault="loja-a's refresh tokens revoked and access tokens expired while both accounts were loading",
           outcome=f"{len(parked)} message(s) of loja-a parked (account on each), none of loja-b; loja-b finished "
                   "meanwhile; /status: loja-a reauth_required=true, loja-b false; exactly 1 ERROR "
                   f"(bling_reauthorization_required, account=loja-a); after re-authorizing loja-a its work resumed "
                   f"and each schema = its truth ({reports[ACCOUNT_A].counts['nfe']} and "
                   f"{reports[ACCOUNT_B].counts['nfe']} NF-e) in {time.monotonic() - t0:.0f} s",
           ok=True, seconds=chaos.elapsed(), settle_s=round(waited, 1), parked=len(parked))


def test_no_secret_in_any_log_of_the_two_account_chaos_run(chaos: AccountsChaos):
    """Both accounts' tokens (every pair their documents held during the module), the client secret, the DB
    password and the auth admin key: in no log the stack wrote."""
    no_secret_in_any_log(chaos, "two accounts: no secret in any log", min_tokens=4)
