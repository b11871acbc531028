"""Writes to the audit tables (etl_run, etl_window, etl_window_nfe); every write is idempotent.

A redelivered message repeats the same writes: runs and windows are inserted with ON CONFLICT DO NOTHING, and an
invoice's outcome in a window is one row keyed by (run, window, nfe_id), so counts derived from it never double.
"""
from __future__ import annotations

import datetime
import json
from typing import Iterable

from shared import db
from shared.messages import NoteRef, Window


def record_run(run_id: str, kind: str, body: dict, start: datetime.date, end: datetime.date,
               windows: Iterable[Window]) -> None:
    with db.transaction() as cur:
        cur.execute("""INSERT INTO etl_run (run_id, tipo, pedido, inicio, fim) VALUES (%s, %s, %s::jsonb, %s, %s)
                       ON CONFLICT (run_id) DO NOTHING""", (run_id, kind, json.dumps(body), start, end))
        for window in windows:
            cur.execute("""INSERT INTO etl_window (run_id, inicio, fim) VALUES (%s, %s, %s)
                           ON CONFLICT DO NOTHING""", (run_id, window.start, window.end))


def ensure_window(window: Window) -> None:
    """A window message typed by hand (or replayed after its run rows were lost) still gets its audit rows."""
    with db.transaction() as cur:
        cur.execute("""INSERT INTO etl_run (run_id, tipo, pedido, inicio, fim) VALUES (%s, 'range', %s::jsonb, %s, %s)
                       ON CONFLICT (run_id) DO NOTHING""",
                    (window.run_id, json.dumps(window.to_json()), window.start, window.end))
        cur.execute("INSERT INTO etl_window (run_id, inicio, fim) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                    (window.run_id, window.start, window.end))


def window_listing_progress(window: Window, status: str, pages: int, api_calls: int, throttled: int,
                            error: str | None = None) -> None:
    with db.transaction() as cur:
        cur.execute("""UPDATE etl_window SET status = %s, paginas = paginas + %s, chamadas_api = chamadas_api + %s,
                              respostas_429 = respostas_429 + %s, erro = %s, atualizado_em = now(),
                              listado_em = CASE WHEN %s = 'listed' THEN now() ELSE listado_em END
                       WHERE run_id = %s AND inicio = %s AND fim = %s""",
                    (status, pages, api_calls, throttled, error, status, window.run_id, window.start, window.end))


def record_listed(window: Window, notes: Iterable[NoteRef]) -> None:
    rows = [(window.run_id, window.start, window.end, n.id, n.situacao) for n in notes]
    if not rows:
        return
    with db.transaction() as cur:
        cur.executemany("""INSERT INTO etl_window_nfe (run_id, inicio, fim, nfe_id, situacao_lista)
                           VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING""", rows)


def record_outcome(cur, run_id: str, window_key: str, nfe_id: int, outcome: str, api_calls: int,
                   detail: str | None = None) -> None:
    """Inside the caller's transaction, so the outcome commits together with the invoice it describes."""
    start, end = parse_window_key(window_key)
    cur.execute("""UPDATE etl_window_nfe SET resultado = %s, chamadas_api = chamadas_api + %s, detalhe = %s,
                          atualizado_em = now()
                   WHERE run_id = %s AND inicio = %s AND fim = %s AND nfe_id = %s""",
                (outcome, api_calls, detail, run_id, start, end, nfe_id))


def parse_window_key(key: str) -> tuple[datetime.date, datetime.date]:
    start, _, end = key.partition("..")
    return datetime.date.fromisoformat(start), datetime.date.fromisoformat(end)
