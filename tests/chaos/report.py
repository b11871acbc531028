"""Render the reliability table from what the suite measured (.stack/reliability.json, written by
tests/chaos/reliability.record):

    .venv/bin/python -m pytest tests/chaos tests/integration/badinput tests/integration/security
    .venv/bin/python -m tests.chaos.report                  # markdown table on stdout
    .venv/bin/python -m tests.chaos.report --json PATH      # another ledger
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tests.chaos.reliability import LEDGER

# Row order of the table: the scenarios of issues 6 and 10 in the order they are described; unknown ones go last.
ORDER = ("duplicate and out-of-order delivery", "function process killed mid-work",
         "PostgreSQL restarted mid-backfill", "Bling 5xx, 429 storms, resets, truncated JSON",
         "access token expires under several instances", "refresh token revoked mid-run",
         "authorization or configuration broken", "token endpoint down (503 from a load balancer)",
         "token endpoint down (Bling's IP block)", "one invoice always answering 503", "enrich process killed mid-work",
         "poison message", "dead letters replayed after PostgreSQL was down",
         "bad input: scheduler messages", "bad input: lister messages", "bad input: detail messages",
         "bad input: enrich messages", "bad input: unknown NF-e id", "odd Bling payloads",
         "values PostgreSQL cannot hold", "over-long SKU", "no secret in any log", "SQL injection through a name",
         "SQL built only from constants")


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def render(ledger: dict) -> str:
    rows = sorted(ledger.values(), key=lambda e: (ORDER.index(e["scenario"]) if e["scenario"] in ORDER
                                                  else len(ORDER), e["scenario"]))
    lines = ["| Scenario | What the test does | Measured outcome | Result | Time |", "| --- | --- | --- | --- | --- |"]
    for e in rows:
        took = f"{e['seconds']:.0f} s" if isinstance(e.get("seconds"), (int, float)) else ""
        lines.append(f"| {_cell(e['scenario'])} | {_cell(e['fault'])} | {_cell(e['outcome'])} | "
                     f"{'pass' if e.get('ok') else 'FAIL'} | {took} |")
    recorded = sorted(e.get("recorded_at", "") for e in rows)
    if recorded:
        lines.append("")
        lines.append(f"Measured by the test suite between {recorded[0]} and {recorded[-1]} (UTC); "
                     "`python -m tests.chaos.report` renders this table from `.stack/reliability.json`.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, default=LEDGER)
    args = parser.parse_args(argv)
    try:
        ledger = json.loads(args.json.read_text(encoding="utf-8"))
    except OSError:
        print(f"no ledger at {args.json}: run the chaos, badinput and security tests first", file=sys.stderr)
        return 1
    print(render(ledger))
    return 0


if __name__ == "__main__":
    sys.exit(main())
