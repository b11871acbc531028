"""`make bench` end to end at a tiny scale: every part runs, the table and its JSON come out, nothing is left
running. Proves the script works, not the numbers (those are in docs/BENCHMARKS.md)."""
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
    argv = [sys.executable, "-m", "local.bench", "--scale", "0.05", "--months", "2025-09..2026-02",
            "--rerun-month", "2026-01", "--loading-invoices", "200", "--coldstart-runs", "1", "--json", str(out)]
    proc = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=110,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-4000:]}"
    lines = proc.stdout.splitlines()
    assert lines[0].split("|")[0].strip() == "measure" and "met?" in lines[0], proc.stdout
    table = "\n".join(lines)
    for measure in ("cold start: import detail/main.py", "loading ÷ API", "backfill: utilisation",
                    "backfill: nothing lost", "re-run of loaded month 2026-01", "daily run", "baseline",
                    "ours ÷ baseline"):
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

    # Everything the bench started is gone: no process still runs from its stack's directory.
    stack_dir = result["details"]["stack"]["run_dir"]
    leftovers = subprocess.run(["pgrep", "-f", stack_dir], capture_output=True, text=True).stdout.split()
    assert leftovers == [], f"processes left running: {leftovers}"
