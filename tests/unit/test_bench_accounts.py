"""The report math of the multi-account bench (local.bench_accounts): ratios against issue 14's targets."""
from __future__ import annotations

import pytest

from local.bench_accounts import account_names, ledger_cost, rows, summarize
from shared.accounts import parse_account_id


def _run(n: int, wall_s: float, accepted: int, ops: int, calls: int) -> dict:
    return {"n": n, "speedup": 10.0, "wall_s": wall_s, "limit_per_s": 30.0, "accepted_until_complete": accepted,
            "ledger_ops": ops,
            "ledger_requests": calls, "responses_429": 0, "nothing_lost": True, "nfe_total": 150 * n}


def test_throughput_is_measured_against_n_times_the_limit_and_wall_against_one_account():
    runs = {1: _run(1, 20.0, 540, 600, 540), 2: _run(2, 21.0, 1080, 1300, 1080), 4: _run(4, 25.0, 2160, 2800, 2160)}

    s = summarize(runs)

    assert s[1]["throughput_ratio"] == pytest.approx(540 / 20 / 30)  # 0.9
    assert s[2]["throughput_ratio"] == pytest.approx(1080 / 21 / 60)
    assert s[4]["throughput_ratio"] == pytest.approx(2160 / 25 / 120)  # 0.72
    assert s[1]["wall_ratio"] == 1.0 and s[2]["wall_ratio"] == pytest.approx(1.05)
    assert s[4]["wall_ratio"] == pytest.approx(1.25)
    assert s[4]["ledger_ops_per_call"] == pytest.approx(2800 / 2160)
    assert s[4]["ledger_ops_growth"] == pytest.approx((2800 / 2160) / (600 / 540))


def test_rows_say_met_or_not_against_the_targets():
    runs = {1: _run(1, 20.0, 540, 600, 540), 4: _run(4, 25.0, 2160, 2800, 2160)}

    table = {r.measure: r for r in rows(runs)}

    assert table["accounts: 1 at once: throughput ÷ (N × limit)"].met is True  # 0.90 ≥ 0.9
    assert table["accounts: 4 at once: throughput ÷ (N × limit)"].met is False  # 0.72
    assert table["accounts: 1 at once: wall ÷ wall of 1 account"].met is None  # N=1 is the yardstick itself
    assert table["accounts: 4 at once: wall ÷ wall of 1 account"].met is False  # 1.25 > 1.1
    assert "1.30 (2800 ÷ 2160), 1.17× N=1" in table["accounts: 4 at once: Firestore calls of the rate ledgers "
                                                  "per Bling request"].value
    assert table["accounts: 4 at once: wall, first publish → every account complete"].value == \
        "25.0 s (2160 requests, 600 NF-e, ×10)"


def test_without_a_run_of_one_account_there_is_no_wall_ratio():
    s = summarize({2: _run(2, 21.0, 1080, 0, 0)})

    assert s[2]["wall_ratio"] is None and s[2]["ledger_ops_per_call"] is None


def test_ledger_cost_sums_the_request_lines_after_the_start():
    lines = [{"event": "bling_request", "ledger_ops": 2, "time": "2026-12-01T12:00:01+00:00"},
             {"event": "bling_request", "ledger_ops": 1, "time": "2026-12-01T12:00:02+00:00"},
             {"event": "bling_request", "ledger_ops": 5, "time": "2026-12-01T11:00:00+00:00"},  # an earlier run
             {"event": "bling_request", "time": "2026-12-01T12:00:03+00:00"},  # a budget that does not count
             {"event": "nfe_stored", "ledger_ops": 9, "time": "2026-12-01T12:00:03+00:00"}]
    import datetime

    since = datetime.datetime.fromisoformat("2026-12-01T12:00:00+00:00").timestamp()

    assert ledger_cost(lines, since) == (3, 2)


def test_account_names_are_pipeline_slugs():
    assert [parse_account_id(name) for name in account_names(4)] == ["conta-1", "conta-2", "conta-3", "conta-4"]
