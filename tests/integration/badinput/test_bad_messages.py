"""Bad input on every topic, delivered to the real handlers in-process (sandbox, emulators, PostgreSQL).

Each case: the handler returns (the push is acknowledged, so Pub/Sub does not retry it), exactly one clear ERROR
line names the problem, and nothing stored changed. Scheduler cases already in tests/integration/data/test_pipeline.py
(not JSON, empty, 2021-13, end before start, 20 years, unknown key, [], null month) are not repeated here.
"""
from __future__ import annotations

import base64

from tests.chaos.reliability import record
from tests.integration.badinput.helpers import deliver, errors, log_lines, one_clear_error, snapshot
from tests.integration.data.pipeline_driver import envelope, handler
from tests.integration.process_deps import account_db

# -------------------------------------------------------------------------------------------- scheduler

SCHEDULER_CASES = {
    "month as a number": (b'{"month": 202103}', "month must be"),
    "daily not true": (b'{"daily": "yes"}', "daily must be true"),
    "negative lookback": (b'{"daily": true, "lookback_days": -1}', "lookback_days"),
    "lookback as text": (b'{"daily": true, "lookback_days": "7"}', "lookback_days"),
    "start as a number": (b'{"start": 20210101, "end": "2021-02-01"}', "start must be a date"),
    "30 February": (b'{"start": "2021-02-30", "end": "2021-03-31"}', "not a valid date"),
    "range without end": (b'{"start": "2021-01-01"}', "expected"),
    "month before NF-e existed": (b'{"month": "1999-01"}', "before"),
    "month in the future": (b'{"month": "2999-01"}', "future"),
    "month 00": (b'{"month": "2021-00"}', "month must be"),
    "not UTF-8": (b'\xff\xfe\x00\x01', "not json"),
    "truncated JSON": (b'{"month": "2021-03"', "not json"),
    "a JSON string": (b'"2021-03"', "json object"),
    "NaN": (b'{"month": NaN}', "month must be"),
    "nested 100,000 deep": (b"[" * 100_000 + b"]" * 100_000, "not json"),
}


def check_cases(capsys, postgres, stored, server, function: str, cases: dict, quiet_topic: str | None,
                capture=None) -> None:
    """Deliver each case to the function; collect every case that does not end in one clear ERROR with nothing
    stored, no Bling call and nothing published, and fail once listing them all.

    A handler returns only once what it published was accepted, so a message of this case is there at once (a pull
    that does not wait); the wait for a late one (0.2 s) is paid once, after the last case, for them all."""
    problems = []
    for name, (payload, fragment) in cases.items():
        try:
            line = one_clear_error(deliver(capsys, function, payload), function, fragment)
            assert len(line.get("input", "")) <= 500, "the quoted input is not cut"
            assert bling_calls(server) == 0, "Bling was called"
            if quiet_topic:
                assert capture.pull(quiet_topic, timeout_s=0) == [], f"something was published to {quiet_topic}"
            assert snapshot(postgres) == stored, "a stored row changed"
        except AssertionError as exc:
            problems.append(f"{name}: {exc}")
    if quiet_topic:
        late = capture.pull(quiet_topic, timeout_s=0.2)
        if late:
            problems.append(f"after the cases: something was published to {quiet_topic}: {late[:3]}")
    assert not problems, "\n".join(problems)
    record(f"bad input: {function} messages", fault=f"{len(cases)} bad messages: " + "; ".join(cases),
           outcome="each: exactly 1 ERROR naming the problem with the input quoted (≤ 500 chars), acknowledged "
                   "(no redelivery), 0 Bling calls, nothing published, every table unchanged", ok=True)


def test_bad_scheduler_messages(stored, bling, postgres, pubsub_topology, capsys):
    check_cases(capsys, postgres, stored, bling, "scheduler", SCHEDULER_CASES, "bling-windows", pubsub_topology)


def test_a_one_megabyte_message_is_refused_and_quoted_only_in_part(stored, postgres, pubsub_topology, capsys):
    payload = b'{"month": "2026-01", "padding": "' + b"x" * 1_000_000 + b'"}'
    line = one_clear_error(deliver(capsys, "scheduler", payload), "scheduler", "month")
    assert len(line["input"]) <= 500
    assert pubsub_topology.pull("bling-windows", timeout_s=0.3) == []
    assert snapshot(postgres) == stored


def test_undecodable_or_empty_envelopes_are_dropped(stored, postgres, capsys):
    for event, fragment in (({"message": {"data": "!!! not base64 !!!", "messageId": "x"}}, "undecodable"),
                            ({"message": {"data": base64.b64encode(b"x").decode() + "=garbage"}}, "undecodable"),
                            ({"subscription": "no message at all"}, "empty")):
        capsys.readouterr()
        handler("detail")(event)
        one_clear_error(log_lines(capsys.readouterr().out), "detail", fragment)
    assert snapshot(postgres) == stored


# -------------------------------------------------------------------------------------------- windows (lister)

W = {"run_id": "bad-window", "start": "2026-01-01", "end": "2026-01-31"}
WINDOW_CASES = {
    "not JSON": (b"<window>", "not json"),
    "missing end": ({"run_id": "r", "start": "2026-01-01"}, "missing keys"),
    "unknown key": ({**W, "page": 3}, "unknown keys"),
    "end before start": ({**W, "start": "2026-02-01"}, "before start"),
    "longer than a year": ({**W, "start": "2024-01-01"}, "one-year"),
    "empty run_id": ({**W, "run_id": ""}, "run_id"),
    "run_id of 5,000 characters": ({**W, "run_id": "r" * 5000}, "run_id"),
    "run_id a number": ({**W, "run_id": 7}, "run_id"),
    "30 February": ({**W, "end": "2026-02-30"}, "not a valid date"),
    "start null": ({**W, "start": None}, "start must be"),
    "a list": ([W], "json object"),
}


def test_bad_window_messages(stored, bling, postgres, pubsub_topology, capsys):
    check_cases(capsys, postgres, stored, bling, "lister", WINDOW_CASES, "bling-nfe", pubsub_topology)


def test_a_window_without_invoices_lists_nothing_and_stores_no_data(stored, postgres, pubsub_topology, capsys):
    """A window that refers to nothing (a month before the account had invoices) is not an error: it is listed,
    audited, and publishes nothing."""
    lines = deliver(capsys, "lister", {"run_id": "empty-month", "start": "2019-01-01", "end": "2019-01-31"})
    assert errors(lines) == []
    assert pubsub_topology.pull("bling-nfe", timeout_s=0.3) == []
    after = snapshot(postgres)
    assert {t: rows for t, rows in after.items() if not t.startswith("etl_")} == \
        {t: rows for t, rows in stored.items() if not t.startswith("etl_")}
    assert any("'empty-month'" in row and "'listed'" in row for row in after["etl_window"])


# -------------------------------------------------------------------------------------------- NF-e batches (detail)

B = {"run_id": "seed-run", "window": "2026-01-01..2026-01-31", "notes": [{"id": 1, "situacao": 5}]}
BATCH_CASES = {
    "no notes": ({**B, "notes": []}, "notes must be"),
    "notes not a list": ({**B, "notes": "1,2"}, "notes must be"),
    "note without situacao": ({**B, "notes": [{"id": 1}]}, "each note"),
    "negative id": ({**B, "notes": [{"id": -4, "situacao": 5}]}, "positive integer"),
    "id true": ({**B, "notes": [{"id": True, "situacao": 5}]}, "positive integer"),
    "id as text": ({**B, "notes": [{"id": "17", "situacao": 5}]}, "positive integer"),
    "id beyond bigint": ({**B, "notes": [{"id": 2 ** 63, "situacao": 5}]}, "note id"),
    "situacao 0": ({**B, "notes": [{"id": 1, "situacao": 0}]}, "situacao"),
    "situacao beyond smallint": ({**B, "notes": [{"id": 1, "situacao": 40000}]}, "situacao"),
    "window not a window": ({**B, "window": "garbage"}, "window"),
    "window month 13": ({**B, "window": "2026-13-01..2026-13-31"}, "window"),
    "window backwards": ({**B, "window": "2026-01-31..2026-01-01"}, "window"),
    "1,001 notes": ({**B, "notes": [{"id": i, "situacao": 5} for i in range(1, 1002)]}, "notes must be"),
    "missing run_id": ({"window": B["window"], "notes": B["notes"]}, "missing keys"),
}


def test_bad_nfe_batch_messages(stored, bling, postgres, pubsub_topology, capsys):
    check_cases(capsys, postgres, stored, bling, "detail", BATCH_CASES, "bling-enrich", pubsub_topology)


def test_an_unknown_nfe_id_is_recorded_failed_after_one_call_and_not_retried(stored, bling, postgres, capsys):
    """Bling answers 404 for an id it does not know: one request, one ERROR, the audit says failed, the handler
    acknowledges (no Pub/Sub retry loop), and no data row changes."""
    from shared import audit
    from shared.messages import NoteRef
    from tests.integration.badinput.conftest import SEED_WINDOW

    audit.record_listed(account_db(), SEED_WINDOW, [NoteRef(id=987654321, situacao=5)])
    before = snapshot(postgres)
    lines = deliver(capsys, "detail", {"run_id": SEED_WINDOW.run_id, "window": SEED_WINDOW.key,
                                       "notes": [{"id": 987654321, "situacao": 5}]})
    line = one_clear_error(lines, "detail", "not loaded")
    assert line["nfe_id"] == 987654321 and line["http_status"] == 404
    assert {k: v for k, v in bling.stats()["requests_by_kind"].items() if v} == {"nfe_detail": 1}
    after = snapshot(postgres)
    assert {t: r for t, r in after.items() if t != "etl_window_nfe"} == \
        {t: r for t, r in before.items() if t != "etl_window_nfe"}
    assert [tuple(r) for r in account_db().fetch_all("SELECT resultado, chamadas_api FROM etl_window_nfe "
                                           "WHERE nfe_id = 987654321")] == [("failed", 1)]
    record("bad input: unknown NF-e id", fault="an NF-e batch naming an id Bling does not have (404)",
           outcome="1 detail call, 1 ERROR, audit row 'failed', message acknowledged (no retry loop), "
                   "no data row changed", ok=True)


# -------------------------------------------------------------------------------------------- enrich

E = {"run_id": "seed-run", "contact_ids": [1], "skus": ["SKU-1"]}
ENRICH_CASES = {
    "nothing to enrich": ({**E, "contact_ids": [], "skus": []}, "nothing to enrich"),
    "contact_ids not a list": ({**E, "contact_ids": "1"}, "must be lists"),
    "contact id 0": ({**E, "contact_ids": [0]}, "contact id"),
    "contact id beyond bigint": ({**E, "contact_ids": [2 ** 63]}, "contact id"),
    "sku of 2,001 characters": ({**E, "skus": ["S" * 2001]}, "sku"),
    "blank sku": ({**E, "skus": ["   "]}, "sku"),
    "sku a number": ({**E, "skus": [123]}, "sku"),
    "unknown key": ({**E, "force": True}, "unknown keys"),
}


def test_bad_enrich_messages(stored, bling, postgres, capsys):
    check_cases(capsys, postgres, stored, bling, "enrich", ENRICH_CASES, None)


def test_enrich_for_a_contact_and_a_sku_bling_does_not_have(stored, bling, postgres, capsys):
    """They are recorded as not found (so they are not asked again every day), each after a single lookup."""
    lines = deliver(capsys, "enrich", {"run_id": "seed-run", "contact_ids": [99999901], "skus": ["NO-SUCH-SKU"]})
    assert errors(lines) == []
    kinds = bling.stats()["requests_by_kind"]
    assert kinds.get("contato") == 1
    database = account_db()
    assert [tuple(r) for r in database.fetch_all("SELECT encontrado FROM contato WHERE id = 99999901")] == [(False,)]
    assert [tuple(r) for r in account_db().fetch_all("SELECT encontrado, produto_id FROM produto_sku "
                                           "WHERE codigo = 'NO-SUCH-SKU'")] == [(False, None)]
    after = snapshot(postgres)
    assert {t: r for t, r in after.items() if t not in ("contato", "produto_sku")} == \
        {t: r for t, r in stored.items() if t not in ("contato", "produto_sku")}


# -------------------------------------------------------------------------------------------- helpers

def bling_calls(server) -> int:
    return server.stats()["requests_total"]
