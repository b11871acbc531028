"""Issue 13 through the real functions (scheduler → lister → detail → enrich, sandbox over HTTP, emulators,
PostgreSQL): a range across a year edge is listed in calendar-year windows, audited per month, and a re-run of
the loaded range costs only the list calls of its years."""
from __future__ import annotations

from local import verify
from tests.integration.data.pipeline_driver import Pipeline, rows
from tests.integration.data.test_pipeline import bling, db_report  # the fixture, shared with test_pipeline

RANGE = {"start": "2025-12-01", "end": "2026-02-28"}

def most_list_calls(truth: dict) -> int:
    """Per year window and pass: one page per 100 outgoing ids of the year (both passes counted with all of
    them, an upper bound) and the empty page that ends the pass."""
    by_year = {"2025": 0, "2026": 0}
    for nfe_id in truth["outgoing_ids"]:
        by_year[str(truth["nfe"][nfe_id]["dataEmissao"])[:4]] += 1
    return sum(2 * (-(-n // 100) + 1) for n in by_year.values())


def test_a_range_across_a_year_edge_is_listed_per_year_and_audited_per_month(bling, postgres, pubsub_topology):
    bling.reset_stats()

    Pipeline(pubsub_topology).run(RANGE)

    report, counts, duplicates = db_report(postgres, bling, ("2025-12", "2026-01", "2026-02"))
    assert report.ok, report.summary()
    assert duplicates == [] and counts["nfe"] == len(list(bling.truth()["outgoing_ids"]))
    windows = rows(postgres, "SELECT inicio::text, fim::text, status FROM etl_window ORDER BY inicio")
    assert windows == [("2025-12-01", "2025-12-31", "listed"), ("2026-01-01", "2026-01-31", "listed"),
                       ("2026-02-01", "2026-02-28", "listed")]
    # each invoice in the audit row of its emission month (São Paulo calendar), none left pending
    misplaced = rows(postgres, """SELECT count(*) FROM etl_window_nfe w JOIN nfe n ON n.id = w.nfe_id
                                  WHERE (n.data_emissao AT TIME ZONE 'America/Sao_Paulo')::date
                                        NOT BETWEEN w.inicio AND w.fim""")
    assert misplaced == [(0,)]
    summary = rows(postgres, "SELECT sum(listadas), sum(novas), sum(pendentes) FROM etl_window_resumo")
    assert summary == [(counts["nfe"], counts["nfe"], 0)]
    # two windows (2025-12, 2026-01..02), two passes each, each pass one page per 100 ids + the empty one
    lists = bling.stats()["requests_by_kind"]["nfe_list"]
    assert lists <= most_list_calls(bling.truth())
    # a window's pages and list calls are counted once, on the row of its first month
    pages = rows(postgres, "SELECT inicio::text, paginas, chamadas_api FROM etl_window ORDER BY inicio")
    assert [p[0] for p in pages if p[1] > 0] == ["2025-12-01", "2026-01-01"]
    assert sum(p[1] for p in pages) == lists and pages[2][1:] == (0, 0)


def test_rerunning_the_loaded_range_costs_only_the_list_calls_of_its_years(bling, postgres, pubsub_topology):
    Pipeline(pubsub_topology).run(RANGE)
    before = rows(postgres, "SELECT id, situacao, atualizado_em FROM nfe ORDER BY id")
    bling.reset_stats()

    Pipeline(pubsub_topology).run(RANGE)

    stats = bling.stats()
    assert stats["requests_total"] == stats["requests_by_kind"]["nfe_list"] <= most_list_calls(bling.truth())
    assert rows(postgres, "SELECT id, situacao, atualizado_em FROM nfe ORDER BY id") == before
    conn = postgres.connect()
    try:
        assert verify.duplicate_report(conn) == []
    finally:
        conn.close()
