"""Several accounts in one process (issue 14): each message runs against its own account's token, rate ledger,
checkpoints, claims and schema, and a message for an account that is not served runs against none.

The in-process functions (tests/integration/data/pipeline_driver) against a two-company sandbox; the sandbox knows
which company each request's token belongs to and serves that company's data only."""
from __future__ import annotations

import datetime

import pytest

from local import verify
from local.sandbox.accounts import SandboxAccount
from local.sandbox.dataset import build_account_dataset
from shared import enrichment, parking, topology
from shared.account_registry import AccountStatus
from shared.accounts import schema_for
from shared.domain import EntityKind
from shared.messages import PubSubMessage
from shared.schedule import today_in
from tests.integration.badinput.helpers import deliver, errors, one_clear_error, snapshot
from tests.integration.data.pipeline_driver import Pipeline
from tests.integration.process_deps import authorize, current_deps, parked_collection

A, B = "loja-a", "loja-b"
JANUARY = "2026-01"
# Bling's 3 req/s scaled ×10 in time (sandbox limit and our budget alike), as in tests/integration/data: these tests
# are about accounts, not the rate (the budget is tested at the real rate in tests/integration/bling).
SCALED_RATE, SCALED_BUDGET = 30.0, "28"


@pytest.fixture
def two_companies(sandbox, db_env, firestore_env, pubsub_topology, monkeypatch):
    """A sandbox with two companies, each authorized as the pipeline account of the same name."""
    monkeypatch.setenv("BLING_RATE_BUDGET_PER_S", SCALED_BUDGET)
    server = sandbox(rate_per_s=SCALED_RATE,
                     accounts=[SandboxAccount(A, build_account_dataset("small", seed=11, index=0)),
                               SandboxAccount(B, build_account_dataset("small", seed=12, index=1))])
    for account in (A, B):
        authorize(server.issue_tokens(account=account), account)
    return server


def january_ids(server, account: str) -> set[int]:
    truth = server.truth(account=account)
    return {i for i in truth["outgoing_ids"] if truth["nfe"][i]["dataEmissao"].startswith(JANUARY)}


def stored_ids(postgres, account: str) -> set[int]:
    conn = postgres.connect(schema_for(account))
    try:
        cur = conn.cursor()
        cur.execute("SELECT id FROM nfe")
        return {row[0] for row in cur.fetchall()}
    finally:
        conn.close()


def test_two_accounts_in_one_process_share_no_token_ledger_checkpoint_claim_or_schema(
        two_companies, postgres, pubsub_topology):
    pipeline = Pipeline(pubsub_topology, shuffle_seed=7)  # both accounts' messages interleaved
    for account in (A, B):
        pipeline.deliver(topology.SCHEDULE.topic, {"month": JANUARY, "account": account})
    pipeline.drain()

    for account in (A, B):  # each schema holds exactly its own company's invoices, and they are right
        assert stored_ids(postgres, account) == january_ids(two_companies, account)
        conn = postgres.connect(schema_for(account))
        try:
            report = verify.verify(conn, verify.normalize_truth(two_companies.truth(account=account)), [JANUARY])
        finally:
            conn.close()
        assert report.ok, (account, report.summary())
    assert not stored_ids(postgres, A) & stored_ids(postgres, B)
    log = two_companies.app.request_log()
    assert {r["account"] for r in log} == {A, B}  # every request carried a known company's token
    for account in (A, B):
        assert two_companies.stats(account=account)["requests_by_kind"]["nfe_list"] >= 2

    deps = current_deps()
    tokens = {doc.id: doc.to_dict() for doc in deps.collection(topology.OAUTH).stream()}
    assert set(tokens) == {A, B} and tokens[A]["access_token"] != tokens[B]["access_token"]
    checkpoints = [doc.id for doc in deps.collection(topology.CHECKPOINTS).stream()]
    assert sorted(c.split("|")[0] for c in checkpoints) == [A, B]  # one window each, keyed by its account
    ticks = [doc.to_dict() for doc in deps.collection(topology.RATE_TICKS).stream() if doc.id != "clock"]
    assert {t["ledger"] for t in ticks} == {A, B}
    assert all(doc_id.startswith(f"{t['ledger']}|") for doc_id, t in
               ((d.id, d.to_dict()) for d in deps.collection(topology.RATE_TICKS).stream()))
    # A claim on contact 7 of one account is not a claim on contact 7 of the other.
    claims = deps.collection(topology.ENRICH_CLAIMS)
    assert enrichment.claim(claims, A, EntityKind.CONTACT, "7", "message-of-a")
    assert enrichment.claim(claims, B, EntityKind.CONTACT, "7", "message-of-b")


@pytest.mark.parametrize("function,payload", [
    ("lister", {"run_id": "r", "start": "2026-01-01", "end": "2026-01-31", "account": "{account}"}),
    ("detail", {"run_id": "r", "window": "2026-01-01..2026-01-31", "notes": [{"id": 1, "situacao": 5}],
                "account": "{account}"}),
    ("enrich", {"run_id": "r", "contact_ids": [1], "skus": [], "account": "{account}"}),
    ("scheduler", {"month": JANUARY, "account": "{account}"}),
])
@pytest.mark.parametrize("account,said", [("loja-z", "not connected"), (B, "paused")])
def test_a_message_for_an_account_not_served_is_dropped_with_one_error_and_writes_nothing(
        two_companies, postgres, pubsub_topology, capsys, function, payload, account, said):
    current_deps().accounts.set_status(B, AccountStatus.PAUSED, "the client stopped paying")
    payload = {k: account if v == "{account}" else v for k, v in payload.items()}
    before = snapshot(postgres)
    two_companies.reset_stats()

    lines = deliver(capsys, function, payload)

    one_clear_error(lines, function, account, said)
    assert snapshot(postgres) == before
    assert two_companies.stats()["requests_total"] == 0  # never run against another account's token
    assert not list(parked_collection().stream())
    assert pubsub_topology.pull_topics([r.topic for r in topology.ROUTES[1:]], timeout_s=0.3) == []


def test_a_message_naming_no_account_while_two_are_active_is_dropped_with_one_error(
        two_companies, postgres, pubsub_topology, capsys):
    before = snapshot(postgres)

    lines = deliver(capsys, "lister", {"run_id": "r", "start": "2026-01-01", "end": "2026-01-31"})

    one_clear_error(lines, "lister", "names no account", "2 accounts are active")
    assert snapshot(postgres) == before and two_companies.stats()["requests_total"] == 0
    assert not pubsub_topology.pull(topology.NFE.topic, timeout_s=0.3)


def test_a_message_naming_no_account_before_any_is_connected_is_parked_until_one_is(
        sandbox, db_env, firestore_env, pubsub_topology, postgres, capsys, monkeypatch):
    monkeypatch.setenv("BLING_RATE_BUDGET_PER_S", SCALED_BUDGET)  # January is loaded at the end: not at 3 req/s
    server = sandbox("small", rate_per_s=SCALED_RATE)
    window = {"run_id": "r", "start": "2026-01-01", "end": "2026-01-31"}

    lines = deliver(capsys, "lister", window, message_id="before-any-account")

    assert errors(lines) == [] and any(line.get("event") == "message_parked" for line in lines)
    (parked,) = [doc.to_dict() for doc in parked_collection().stream()]
    assert (parked["reason"], parked["account"]) == ("NoAccountConnected", None)
    assert server.stats()["requests_total"] == 0
    # Work parked for another account stays parked when this one connects (its reason still holds).
    parking.park(parked_collection(), topology.WINDOWS.topic, PubSubMessage(b"{}", {}, "other-account"),
                 "DailyLimitReached", account=B)

    authorize(server.issue_tokens(), A)
    assert parking.release_after_fix(current_deps(), A) == 1  # what the auth callback does for the account
    assert [doc.id for doc in parked_collection().stream()] == ["other-account"]
    Pipeline(pubsub_topology).drain()  # the released window runs for the one account connected now
    truth = server.truth()
    assert stored_ids(postgres, A) == {i for i in truth["outgoing_ids"]
                                       if truth["nfe"][i]["dataEmissao"].startswith(JANUARY)}


def test_the_daily_tick_fans_out_to_every_active_account_one_run_each(two_companies, postgres, pubsub_topology):
    deps = current_deps()
    authorize(two_companies.issue_tokens(account=A), "loja-c")  # a third account, then paused: not run
    deps.accounts.set_status("loja-c", AccountStatus.PAUSED)
    pipeline = Pipeline(pubsub_topology)

    pipeline.deliver(topology.SCHEDULE.topic, {"daily": True, "lookback_days": 0})
    published = pubsub_topology.pull(topology.WINDOWS.topic)
    assert all(m["attributes"]["account"] == m["data"]["account"] for m in published)  # the attribute repeats it
    windows = [m["data"] for m in published]
    assert sorted(w["account"] for w in windows) == [A, B]
    assert len({w["run_id"] for w in windows}) == 2  # one run each
    today = today_in(deps.settings.timezone).isoformat()
    assert all(w["start"] == w["end"] == today for w in windows)
    for window in windows:
        conn = postgres.connect(schema_for(window["account"]))
        try:
            cur = conn.cursor()
            cur.execute("SELECT run_id, tipo FROM etl_run")
            assert [tuple(r) for r in cur.fetchall()] == [(window["run_id"], "daily")]  # in its own schema
        finally:
            conn.close()
    before = datetime.datetime.now(tz=datetime.UTC)
    for window in windows:
        pipeline.deliver(topology.WINDOWS.topic, window)
    pipeline.drain()
    for account in (A, B):  # the daily run completed cleanly: recorded as the account's last good daily run
        assert deps.accounts.get(account, fresh=True).last_daily_run_ok_at >= before - datetime.timedelta(seconds=5)
    assert deps.accounts.get("loja-c", fresh=True).last_daily_run_ok_at is None
