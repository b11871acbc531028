"""The reliability ledger: each scenario writes one line of what it MEASURED, and `python -m tests.chaos.report`
renders the table for docs/RELIABILITY.md from it.

record() prints the line as `RELIABILITY {json}` (visible with pytest -s, and in the captured output of a failing
test) and merges it into .stack/reliability.json keyed by scenario, so a partial run updates only its rows.
"""
from __future__ import annotations

import datetime
import json
import os
import threading
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
LEDGER = Path(os.environ.get("RELIABILITY_JSON", REPO_ROOT / ".stack" / "reliability.json"))
_lock = threading.Lock()


def record(scenario: str, *, fault: str, outcome: str, ok: bool, **measured: Any) -> dict[str, Any]:
    entry = {"scenario": scenario, "fault": fault, "outcome": outcome, "ok": ok, **measured,
             "recorded_at": datetime.datetime.now(tz=datetime.UTC).isoformat(timespec="seconds")}
    line = json.dumps(entry, default=str, ensure_ascii=False)
    print("RELIABILITY " + line, flush=True)
    with _lock:
        LEDGER.parent.mkdir(parents=True, exist_ok=True)
        try:
            ledger = json.loads(LEDGER.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            ledger = {}
        ledger[scenario] = json.loads(line)
        tmp = LEDGER.with_suffix(".tmp")
        tmp.write_text(json.dumps(ledger, indent=1, ensure_ascii=False), encoding="utf-8")
        tmp.replace(LEDGER)
    return entry
