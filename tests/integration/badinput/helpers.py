"""What every bad-input case asserts: the handler returns (the message is acknowledged, never retried), exactly
the expected ERROR line is logged, and nothing stored changed (every table compared row by row)."""
from __future__ import annotations

import json
from typing import Any

from local.stack.postgres import quote_table
from tests.integration.data.pipeline_driver import envelope, handler


def snapshot(postgres) -> dict[str, list[str]]:
    """Every row of every table (of every schema), as sorted text: equal snapshots mean nothing stored changed.
    Keyed by table name, qualified except for the tests' account's tables."""
    conn = postgres.connect()
    try:
        cur = conn.cursor()
        out = {}
        for table in postgres.tables():
            cur.execute(f"SELECT * FROM {quote_table(table)}")  # table names come from information_schema
            out[table.removeprefix(f"{postgres.default_schema}.")] = sorted(repr(row) for row in cur.fetchall())
        return out
    finally:
        conn.close()


def log_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def deliver(capsys, function: str, payload: Any, message_id: str | None = None) -> list[dict[str, Any]]:
    """One push delivery to the function's handler; it must return (ack). Returns the log lines it wrote."""
    capsys.readouterr()
    handler(function)(envelope(payload, message_id))
    return log_lines(capsys.readouterr().out)


def errors(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in lines if line.get("severity") in ("ERROR", "CRITICAL")]


def one_clear_error(lines: list[dict[str, Any]], function: str, *fragments: str) -> dict[str, Any]:
    """Exactly one ERROR line, from this function, whose message names the problem."""
    found = errors(lines)
    assert len(found) == 1, f"expected exactly one ERROR line, got {found}"
    line = found[0]
    assert line.get("function") == function, line
    text = line["message"].lower()
    for fragment in fragments:
        assert fragment.lower() in text, f"{fragment!r} not in ERROR message {line['message']!r}"
    return line
