"""`make bench` end to end at a tiny scale: every part runs (but the real-speed one, which is the `small` part at
speedup 1), the table and its JSON come out, nothing is left running. Proves the script works and that the issue-13
columns (gap to the fewest calls, fault run, budget ticks, re-run and daily rows) are computed, not the numbers
(those are in docs/BENCHMARKS.md)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from local import stack as local_stack

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[3]


def _require_tools() -> None:
    try:
        local_stack.postgres_bin_dir()
        local_stack.check_pubsub_emulator()
        local_stack.check_firestore_emulator()
    except local_stack.MissingDependency as exc:
        if os.environ.get("CI", "").strip().lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true and a required tool is missing: {exc}", pytrace=False)
        pytest.skip(str(exc))


def test_bench_prints_one_table_and_writes_json(tmp_path: Path) -> None:
    _require_tools()
    out = tmp_path / "bench.json"
    argv = [sys.executable, "-m", "local.bench", "--scale", "0.05", "--months", "2026-01..2026-02",
            "--rerun-month", "2026-01", "--loading-invoices", "50", "--coldstart-runs", "1", "--json", str(out),
            "--only", "coldstart,loading,backfill,rerun,daily,faults,small,baseline",
            # a fault run that shows in a few seconds: 1 s hangs, 10 % faults, a token expiry every 2 s (two months
            # of the history × 0.05 are 9 NF-e: the fault run lasts ~6 s, so a 401 still comes up)
            "--fault-share", "0.1", "--hang-s", "1", "--token-expiry-s", "2",
            # settled after 2 s without a log line (push retries come after 1 s): the rows are checked, not timing
            "--quiet-s", "2"]
    proc = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=240,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-4000:]}"
    lines = proc.stdout.splitlines()
    assert lines[0].split("|")[0].strip() == "measure" and "met?" in lines[0], proc.stdout
    table = "\n".join(lines)
    for measure in ("cold start: import detail/main.py", "loading ÷ API", "backfill: utilisation",
                    "backfill: nothing lost", "re-run of loaded month 2026-01", "daily run", "baseline",
                    "ours ÷ baseline", "backfill: calls made ÷ fewest", "backfill: wall ÷ (fewest ÷ limit)",
                    "backfill: budget ticks", "re-run of the loaded history: list calls per NF-e",
                    "faults: wall ÷ clean backfill wall", "faults: nothing lost", "small: calls made ÷ fewest"):
        assert measure in table, f"{measure!r} missing from the table:\n{table}"
    assert ": error" not in table, table

    result = json.loads(out.read_text())
    rows = {r["measure"]: r for r in result["rows"]}
    assert rows["backfill: nothing lost (verify ok, no duplicates, no dead letters)"]["met"] is True, table
    assert rows["re-run of loaded month 2026-01: calls"]["raw"] == 0, table  # no detail call on a re-run
    backfill = result["details"]["backfill"]
    assert backfill["new_invoices"] == backfill["expected_invoices"] > 0
    assert backfill["requests_by_kind"]["nfe_detail"] >= backfill["new_invoices"]
    baseline = result["details"]["baseline"]
    assert baseline["nfe_detailed"] == backfill["expected_invoices"]

    # The gap to the limit: the fewest calls are below what was made, and the ratios are what the rows print.
    gap, fewest = backfill["gap"], backfill["fewest"]
    assert 0 < fewest["total"] <= backfill["requests_total"]
    assert fewest["by_kind"]["nfe_detail"] == backfill["expected_invoices"]
    assert gap["calls_ratio"] == backfill["requests_total"] / fewest["total"] >= 1
    assert gap["wall_ratio"] == backfill["wall_s"] / (fewest["total"] / backfill["limit_per_s"])
    ratio_row = rows["backfill: calls made ÷ fewest"]
    assert ratio_row["target"] == "≤ 1.1×" and ratio_row["met"] is (gap["calls_ratio"] <= 1.1)
    ticks = rows["backfill: budget ticks after 1st request: sent / dropped late / unclaimed"]["raw"]
    assert ticks["sent_after_first_request"] > 0 and ticks["offered_after_first_request"] > 0
    rerun = result["details"]["rerun_history"]
    assert rerun["requests_by_kind"].get("nfe_detail", 0) == 0 and rerun["nfe_in_range"] == backfill["new_invoices"]
    daily = next(r for m, r in rows.items() if m.startswith("daily run"))
    assert daily["target"] == "2 list calls, nothing else"
    # The fault run: faults were injected and answered, a token expired, and still nothing was lost.
    faults = result["details"]["faults"]
    statuses = faults["responses_by_status"]
    assert sum(statuses.get(k, 0) for k in ("0", "500", "502", "503")) > 0 and statuses.get("401", 0) > 0
    assert faults["nothing_lost"] and faults["nfe_missing"] == 0, table
    assert rows["faults: wall ÷ clean backfill wall"]["raw"] == faults["wall_s"] / backfill["wall_s"]
    small = result["details"]["small"]
    assert small["new_invoices"] == small["expected_invoices"] > 0 and small["nothing_lost"], table

    # Everything the bench started is gone: no process still runs from its stack's directory.
    stack_dir = result["details"]["stack"]["run_dir"]
    leftovers = subprocess.run(["pgrep", "-f", stack_dir], capture_output=True, text=True).stdout.split()
    assert leftovers == [], f"processes left running: {leftovers}"
