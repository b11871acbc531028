"""Writes to the audit tables (etl_run, etl_window, etl_window_nfe); every write is idempotent.

A redelivered message repeats the same writes: runs and windows are inserted with ON CONFLICT DO NOTHING, and an
invoice's outcome in a window is one row keyed by (run, window, nfe_id), so counts derived from it never double.
The tables are the account's (its schema): every function takes the account's database, `database`.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
from collections.abc import Iterable
from typing import Any

from shared.db import SchemaDb
from shared.domain import parse_window_key
from shared.messages import NoteRef, Window


def record_run(database: SchemaDb, run_id: str, kind: str, body: dict[str, Any], start: datetime.date,
               end: datetime.date, windows: Iterable[Window]) -> None:
    with database.transaction() as cur:
        cur.execute("""INSERT INTO etl_run (run_id, tipo, pedido, inicio, fim) VALUES (%s, %s, %s::jsonb, %s, %s)
                       ON CONFLICT (run_id) DO NOTHING""", (run_id, kind, json.dumps(body), start, end))
        for window in windows:
            cur.execute("""INSERT INTO etl_window (run_id, inicio, fim) VALUES (%s, %s, %s)
                           ON CONFLICT DO NOTHING""", (run_id, window.start, window.end))


def ensure_window(database: SchemaDb, window: Window) -> None:
    """A window message typed by hand (or replayed after its run rows were lost) still gets its audit rows."""
    with database.transaction() as cur:
        cur.execute("""INSERT INTO etl_run (run_id, tipo, pedido, inicio, fim) VALUES (%s, 'range', %s::jsonb, %s, %s)
                       ON CONFLICT (run_id) DO NOTHING""",
                    (window.run_id, json.dumps(window.to_json()), window.start, window.end))
        cur.execute("INSERT INTO etl_window (run_id, inicio, fim) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                    (window.run_id, window.start, window.end))


def window_listing_progress(database: SchemaDb, window: Window, status: str, pages: int, api_calls: int, throttled: int,
                            error: str | None = None) -> None:
    with database.transaction() as cur:
        cur.execute("""UPDATE etl_window SET status = %s, paginas = paginas + %s, chamadas_api = chamadas_api + %s,
                              respostas_429 = respostas_429 + %s, erro = %s, atualizado_em = now(),
                              listado_em = CASE WHEN %s = 'listed' THEN coalesce(listado_em, now())
                                                ELSE listado_em END
                       WHERE run_id = %s AND inicio = %s AND fim = %s""",
                    (status, pages, api_calls, throttled, error, status, window.run_id, window.start, window.end))


@dataclasses.dataclass(frozen=True)
class RunCompletion:
    run_id: str
    kind: str
    windows: int
    windows_failed: int


def complete_run_if_done(database: SchemaDb, run_id: str) -> RunCompletion | None:
    """Mark the run completed when every window of it has a final listing status (listed or failed); returns the
    completion only to the one caller whose UPDATE marked it, so it is reported exactly once per run.

    Call it after the window's own status is committed, in a transaction of its own: two last windows finishing
    at once then both see each other's status, and the row lock on etl_run lets only the first UPDATE find
    concluido_em still NULL (the second re-checks the row after the first commits, and matches nothing)."""
    with database.transaction() as cur:
        cur.execute("""UPDATE etl_run r SET concluido_em = now()
                       WHERE r.run_id = %s AND r.concluido_em IS NULL
                         AND EXISTS (SELECT 1 FROM etl_window w WHERE w.run_id = r.run_id)
                         AND NOT EXISTS (SELECT 1 FROM etl_window w WHERE w.run_id = r.run_id
                                         AND w.status NOT IN ('listed', 'failed'))
                       RETURNING r.tipo,
                         (SELECT count(*) FROM etl_window w WHERE w.run_id = r.run_id),
                         (SELECT count(*) FROM etl_window w WHERE w.run_id = r.run_id AND w.status = 'failed')""",
                    (run_id,))
        row = cur.fetchone()
    return RunCompletion(run_id, row[0], row[1], row[2]) if row else None


def record_listed(database: SchemaDb, window: Window, notes: Iterable[NoteRef]) -> None:
    rows = [(window.run_id, window.start, window.end, n.id, n.situacao) for n in notes]
    if not rows:
        return
    with database.transaction() as cur:
        cur.executemany("""INSERT INTO etl_window_nfe (run_id, inicio, fim, nfe_id, situacao_lista)
                           VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING""", rows)


def record_outcome(cur: Any, run_id: str, window_key: str, nfe_id: int, outcome: str, api_calls: int,
                   detail: str | None = None, keep_final: bool = False) -> None:
    """Inside the caller's transaction, so the outcome commits together with the invoice it describes.

    keep_final: only a row still 'listed' takes this outcome (the calls are counted either way), so a delivery
    that stored nothing does not hide what another delivery of the same invoice did."""
    start, end = parse_window_key(window_key)
    cur.execute("""UPDATE etl_window_nfe SET chamadas_api = chamadas_api + %s, atualizado_em = now(),
                          resultado = CASE WHEN %s AND resultado <> 'listed' THEN resultado ELSE %s END,
                          detalhe = CASE WHEN %s AND resultado <> 'listed' THEN detalhe ELSE %s END
                   WHERE run_id = %s AND inicio = %s AND fim = %s AND nfe_id = %s""",
                (api_calls, keep_final, outcome, keep_final, detail, run_id, start, end, nfe_id))

