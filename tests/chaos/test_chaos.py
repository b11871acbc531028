"""Chaos through the real processes: every scenario ends with the database equal to the sandbox truth for the
months it ran, no duplicate row, no lost row, and (unless the scenario is about them) no dead letter.

Each scenario writes its measured outcome with tests.chaos.reliability.record (rendered into
docs/RELIABILITY.md by `python -m tests.chaos.report`). The tests share one stack and run in file order; the
dead-letter scenarios are in test_dead_letters.py, on a stack of their own.
"""
from __future__ import annotations

import time

import pytest

from tests.chaos.conftest import MONTHS, Chaos
from tests.chaos.reliability import record
from tests.log_checks import leaked_secrets

pytestmark = [pytest.mark.chaos, pytest.mark.slow]


def ends_equal_to_truth(chaos: Chaos, months=MONTHS, dead_letters_expected: bool = False):
    report, duplicates, dead = chaos.check(months)
    assert report.ok, report.summary()
    assert duplicates == []
    if not dead_letters_expected:
        assert dead == {}, f"dead letters: {dead}"
    return report, dead


def unexpected_errors(lines) -> list[dict]:
    return [e for e in lines if e.get("severity") in ("ERROR", "CRITICAL")]


def kill_and_restart(chaos: Chaos, function: str, kind: str, timeout_s: float, what: str) -> tuple[int, float]:
    """Once `function` has made 2 Bling calls of `kind`, SIGKILL its process and start it again 1 s later.
    Returns (calls of that kind before the kill, seconds the restart took)."""
    chaos.wait_until(lambda: chaos.calls(kind) >= 2, timeout_s, what)
    before = chaos.calls(kind)
    chaos.stack.kill_function(function)
    time.sleep(1.0)
    t0 = time.monotonic()
    chaos.stack.restart_function(function)
    return before, time.monotonic() - t0


# ------------------------------------------------------------------------------------------------------------

def test_every_message_twice_and_out_of_order(chaos: Chaos):
    chaos.begin()
    # Each month twice, the later month first (two runs per month racing each other) ...
    for month in ("2026-02", "2026-01", "2026-02", "2026-01"):
        chaos.stack.publish("bling-schedule", {"month": month})
    # ... and the same window message twice (one run, a true duplicate), February before January.
    for _ in range(2):
        for start, end in (("2026-02-01", "2026-02-28"), ("2026-01-01", "2026-01-31")):
            chaos.stack.publish("bling-windows", {"run_id": "duplicate-run", "start": start, "end": end})
    waited = chaos.settle()
    report, _ = ends_equal_to_truth(chaos)
    details = chaos.calls("nfe_detail")
    nfe = report.counts["nfe"]
    assert unexpected_errors(chaos.lines()) == []
    record("duplicate and out-of-order delivery",
           fault="each month published twice (Feb, Jan, Feb, Jan) and each window message twice, Feb first; "
                 "3 runs race over the same invoices",
           outcome=f"DB = truth ({nfe} NF-e, {report.counts['nfe_item']} items), 0 duplicate rows, 0 dead letters; "
                   f"{details} detail calls for {nfe} invoices (racing runs may fetch one twice, never store it twice)",
           ok=True, seconds=chaos.elapsed(), settle_s=round(waited, 1), nfe=nfe, detail_calls=details)


def test_function_processes_killed_mid_work_and_restarted(chaos: Chaos):
    chaos.begin()
    chaos.stack.sandbox.admin("config", {"latency_s": 0.4})  # every Bling call takes 0.4 s: kills land mid-call
    chaos.publish_months()
    listed_before_kill, lister_restart_s = kill_and_restart(chaos, "lister", "nfe_list", 60, "the lister listing")
    details_before_kill, _ = kill_and_restart(chaos, "detail", "nfe_detail", 90, "the detail function fetching")
    chaos.stack.sandbox.admin("config", {"latency_s": 0.05})
    waited = chaos.settle()
    report, _ = ends_equal_to_truth(chaos)
    lines = chaos.lines()
    resumed = [e for e in lines if e.get("message") == "page listed" and e.get("_function") == "lister"]
    assert unexpected_errors(lines) == []
    record("function process killed mid-work",
           fault=f"SIGKILL of the lister's process group after {listed_before_kill} list calls (0.4 s each), "
                 f"restarted; then SIGKILL of the detail process after {details_before_kill} detail calls, "
                 "restarted",
           outcome=f"push redelivery resumed both; DB = truth ({report.counts['nfe']} NF-e), 0 duplicates, "
                   f"0 dead letters; lister back in {lister_restart_s:.1f} s",
           ok=True, seconds=chaos.elapsed(), settle_s=round(waited, 1), pages_listed=len(resumed))


def test_enrich_process_killed_mid_work_loses_nothing(chaos: Chaos):
    """Issue 10.3: the enrich instance dies holding its claims on contacts and SKUs (a SIGKILL runs no finally);
    the redelivery of its message, seconds later, must take them over and do the work, not acknowledge it with
    nothing stored because the dead instance's claims are still live (they last 5 minutes)."""
    chaos.begin()
    chaos.stack.sandbox.admin("config", {"latency_s": 0.4})  # every Bling call takes 0.4 s: the kill lands mid-call
    chaos.publish_months()
    contacts_before_kill, _ = kill_and_restart(chaos, "enrich", "contato", 120,
                                               "the enrich function fetching contacts")
    chaos.stack.sandbox.admin("config", {"latency_s": 0.05})
    waited = chaos.settle(timeout_s=150)
    report, _ = ends_equal_to_truth(chaos)
    lines = chaos.lines(["enrich"])
    taken_over = [e for e in lines if e.get("event") == "claim_taken_over"]
    assert taken_over, "the kill left no claim behind: the scenario proved nothing"
    assert unexpected_errors(lines) == []
    record("enrich process killed mid-work",
           fault=f"SIGKILL of the enrich process after {contacts_before_kill} contact calls (0.4 s each), with its "
                 "claims on contacts and SKUs live in Firestore (5 min), restarted 1 s later",
           outcome=f"the redelivered message(s) took over {len(taken_over)} claim(s) the killed instance left; "
                   f"DB = truth "
                   f"({report.counts['contato']} contacts, {report.counts['produto_sku']} SKUs), 0 duplicates, "
                   "0 dead letters",
           ok=True, seconds=chaos.elapsed(), settle_s=round(waited, 1), contacts_before_kill=contacts_before_kill)


def test_postgresql_restarted_in_the_middle_of_a_backfill(chaos: Chaos):
    chaos.begin()
    chaos.stack.sandbox.admin("config", {"latency_s": 0.15})
    chaos.publish_months()
    chaos.wait_until(lambda: chaos.sql("SELECT count(*) FROM nfe")[0][0] >= 3, 90, "some invoices stored")
    stored_before = chaos.sql("SELECT count(*) FROM nfe")[0][0]
    t0 = time.monotonic()
    chaos.stack.restart_postgres()
    restart_s = time.monotonic() - t0
    chaos.stack.sandbox.admin("config", {"latency_s": 0})
    waited = chaos.settle()
    report, _ = ends_equal_to_truth(chaos)
    lines = chaos.lines()
    redelivered = [e for e in lines if str(e.get("message", "")).startswith(("will be redelivered",
                                                                              "unexpected failure"))]
    record("PostgreSQL restarted mid-backfill",
           fault=f"pg_ctl restart (fast) after {stored_before} of {report.expected_counts['nfe']} invoices were "
                 f"stored; down {restart_s:.1f} s",
           outcome=f"{len(redelivered)} message(s) failed and were redelivered; DB = truth "
                   f"({report.counts['nfe']} NF-e), 0 duplicates, 0 dead letters",
           ok=True, seconds=chaos.elapsed(), settle_s=round(waited, 1), redelivered=len(redelivered))


def test_bling_5xx_429_resets_and_truncated_json_never_trip_the_ip_block(chaos: Chaos):
    chaos.begin()
    faults = {"status_5xx_share": 0.08, "storm_429": {"every_n": 40, "length": 4}, "reset_share": 0.03,
              "truncated_json_share": 0.04, "seed": 6}
    chaos.stack.sandbox.faults(faults)
    chaos.publish_months()
    waited = chaos.settle(timeout_s=300)
    stats = chaos.stats()
    chaos.stack.sandbox.faults({})
    ends_equal_to_truth(chaos)
    by_status = {str(k): v for k, v in stats["responses_by_status"].items()}
    fivexx = sum(v for k, v in by_status.items() if k.startswith("5"))
    assert stats["ip_blocked"] is False, stats
    assert stats["max_errors_in_any_10s"] < 300, stats
    assert stats["max_requests_in_any_10s"] < 600, stats
    assert stats["token_calls_max_in_60s"] < 20, stats
    record("Bling 5xx, 429 storms, resets, truncated JSON",
           fault="8% of calls 500/502/503 with nginx HTML bodies, 4 of every 40 calls 429, 3% connections reset, "
                 "4% of 200 bodies cut in half",
           outcome=f"{stats['requests_total']} requests: {fivexx} 5xx, {stats['responses_429']} 429, "
                   f"{by_status.get('0', 0)} dropped; max {stats['max_errors_in_any_10s']} errors and "
                   f"{stats['max_requests_in_any_10s']} requests in any 10 s (block at 300/600), "
                   f"ip_blocked=false, {stats['token_calls_max_in_60s']} token calls/60 s; DB = truth, 0 duplicates",
           ok=True, seconds=chaos.elapsed(), settle_s=round(waited, 1), stats={
               k: stats[k] for k in ("requests_total", "responses_429", "max_errors_in_any_10s",
                                     "max_requests_in_any_10s", "token_calls_max_in_60s", "ip_blocked")})


def test_access_token_expiring_under_several_instances_is_refreshed_once(chaos: Chaos):
    chaos.begin()
    # Phase 1: every access token dies after the 15th authenticated call (the lister, detail and enrich
    # processes are all calling by then).
    chaos.stack.sandbox.faults({"expire_token_after_n": 15})
    chaos.publish_months(["2026-01"])
    chaos.settle(["2026-01"])
    first = chaos.stats()
    assert first["token_calls"] == 1, first
    # Phase 2: the admin expires every access token while February is being loaded.
    chaos.stack.sandbox.faults({})
    chaos.stack.sandbox.reset_stats()
    chaos.stack.sandbox.admin("config", {"latency_s": 0.1})
    chaos.publish_months(["2026-02"])
    chaos.wait_until(lambda: chaos.calls("nfe_detail") >= 3, 60, "February's details being fetched")
    chaos.stack.sandbox.admin("expire_access_tokens", {})
    chaos.stack.sandbox.admin("config", {"latency_s": 0})
    chaos.settle()
    second = chaos.stats()
    assert second["token_calls"] == 1, second
    report, _ = ends_equal_to_truth(chaos)
    lines = chaos.lines()
    rejected = [e for e in lines if e.get("status") == 401]
    refreshed = [e for e in lines if e.get("event") == "bling_token_refreshed"]
    assert len(refreshed) == 2, refreshed
    assert unexpected_errors(lines) == []
    record("access token expires under several instances",
           fault="all access tokens expire after the 15th call (January), then by the admin endpoint in the middle "
                 "of February; lister, detail and enrich processes (each with threads) are calling",
           outcome=f"{len(rejected)} calls got 401; token endpoint called exactly once per expiry "
                   f"(token_calls 1 and 1); DB = truth ({report.counts['nfe']} NF-e), 0 duplicates, 0 dead letters",
           ok=True, seconds=chaos.elapsed(), rejected_401=len(rejected))


def test_refresh_token_revoked_mid_run_parks_the_work_until_reauthorized(chaos: Chaos):
    chaos.begin()
    chaos.stack.sandbox.admin("config", {"latency_s": 0.15})
    chaos.publish_months()
    chaos.wait_until(lambda: chaos.calls("nfe_detail") >= 3, 60, "details being fetched")
    chaos.stack.sandbox.admin("revoke_refresh_tokens", {})
    chaos.stack.sandbox.admin("expire_access_tokens", {})
    chaos.stack.sandbox.admin("config", {"latency_s": 0})
    chaos.stack.wait_for_quiet(quiet_s=4, timeout_s=120)
    parked = chaos.parked()
    status = chaos.status()
    lines = chaos.lines()
    errors = unexpected_errors(lines)
    dead_while_parked = {t: m for t, m in chaos.stack.dead_letters(timeout_s=0.3).items() if m}
    assert parked, "nothing was parked"
    assert dead_while_parked == {}, dead_while_parked
    assert status["reauth_required"] is True and status["reauthorize_url"].endswith("/start?account=loja-teste"), status
    assert len(errors) == 1 and errors[0].get("event") == "bling_reauthorization_required", errors
    assert "re-authorization is required" in errors[0]["message"]
    stored_while_parked = chaos.sql("SELECT count(*) FROM nfe")[0][0]
    t0 = time.monotonic()
    chaos.stack.authorize()  # the human opens the auth function; the callback releases the parked messages
    waited = chaos.settle()
    report, _ = ends_equal_to_truth(chaos)
    assert chaos.parked() == []
    assert chaos.status()["reauth_required"] is False
    record("refresh token revoked mid-run",
           fault="refresh tokens revoked and access tokens expired while details were being fetched",
           outcome=f"{len(parked)} message(s) parked ({', '.join(sorted({p['topic'] for p in parked}))}), 0 dead "
                   f"letters, /status reauth_required=true, exactly 1 ERROR (bling_reauthorization_required); "
                   f"{stored_while_parked} NF-e stored meanwhile; after re-authorizing through the auth function "
                   f"the parked work resumed and DB = truth ({report.counts['nfe']} NF-e) in "
                   f"{time.monotonic() - t0:.0f} s",
           ok=True, seconds=chaos.elapsed(), settle_s=round(waited, 1), parked=len(parked))


def test_no_secret_in_any_log_of_the_whole_chaos_run(chaos: Chaos):
    """After every scenario above (refreshes, revocation, re-authorizations, failures with stack traces): no
    access or refresh token the store ever held, no client secret, DB password or auth admin key in any log the stack
    wrote — the functions' and the infrastructure's (PostgreSQL, emulators, sandbox)."""
    no_secret_in_any_log(chaos, "no secret in any log", min_tokens=2)


def no_secret_in_any_log(chaos: Chaos, scenario: str, min_tokens: int) -> None:
    """The check at the end of a chaos module: none of the secrets in any log; at least `min_tokens` tokens were
    collected during the module (else the check would prove nothing)."""
    chaos.remember_tokens()
    text = chaos.stack.log_text(include_infra=True)
    assert len(chaos.secrets_seen) >= min_tokens, f"{len(chaos.secrets_seen)} tokens collected: the check would " \
                                                  "prove nothing"
    found = leaked_secrets(chaos.stack, text, chaos.secrets_seen)
    assert found == [], f"secrets in logs: {found}"
    record(scenario,
           fault=f"grep of every log the chaos stack wrote ({len(text) // 1024} kB: functions, PostgreSQL, "
                 "emulators, sandbox) after all scenarios",
           outcome=f"0 occurrences of {len(chaos.secrets_seen)} access/refresh tokens held during the run, "
                   "the client secret, the DB password or the auth admin key",
           ok=True)
