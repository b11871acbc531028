"""The data path end to end, in-process: scheduler → lister → detail → enrich against the Bling sandbox over real
HTTP, with the real Firestore and Pub/Sub emulators and PostgreSQL. The database must equal the sandbox truth."""
from __future__ import annotations

import datetime
import json

import pytest

from local import verify
from local.sandbox.dataset import generate_dataset
from tests.integration.data.pipeline_driver import Pipeline, envelope, handler, rows
from tests.integration.process_deps import account_db, authorize

MONTHS = ("2026-01", "2026-02")


# Bling's 3 req/s scaled ×10 in time (sandbox limit and our budget alike), so these tests are not rate-bound;
# the budget itself is tested at the real rate in tests/integration/bling.
SCALED_RATE, SCALED_BUDGET = 30.0, "28"


@pytest.fixture
def bling(sandbox, db_env, firestore_env, pubsub_topology, monkeypatch):
    """The small sandbox, authorized (a token pair stored as the auth callback would)."""
    monkeypatch.setenv("BLING_RATE_BUDGET_PER_S", SCALED_BUDGET)
    server = sandbox("small", rate_per_s=SCALED_RATE)
    authorize(server.issue_tokens())
    return server


def db_report(postgres, server, months=MONTHS):
    conn = postgres.connect()
    try:
        return verify.verify(conn, verify.normalize_truth(server.truth()), months), verify.db_counts(conn), \
            verify.duplicate_report(conn)
    finally:
        conn.close()


def test_two_months_load_exactly_the_truth(bling, postgres, pubsub_topology):
    pipeline = Pipeline(pubsub_topology)
    for month in MONTHS:
        pipeline.run({"month": month})
    report, counts, duplicates = db_report(postgres, bling)
    assert report.ok, report.summary()
    assert duplicates == []
    truth = bling.truth()
    assert counts["nfe"] == len(list(truth["outgoing_ids"]))
    # cancelled invoices are there, incoming ones are not
    stored = {r[0]: r[1] for r in rows(postgres, "SELECT id, situacao FROM nfe")}
    assert set(truth["cancelled_ids"]) <= set(stored) and all(stored[i] == 2 for i in truth["cancelled_ids"])
    assert not set(truth["incoming_ids"]) & set(stored)
    # invoices at 00:00:00 on the 1st and 23:59:59 on the last day are all there
    assert set(truth["edge_ids"]) <= set(stored)
    # two lines with the same SKU stay two rows
    for nfe_id in truth["duplicate_sku_ids"]:
        lines = rows(postgres, "SELECT codigo FROM nfe_item WHERE nfe_id = %s ORDER BY linha", (nfe_id,))
        assert len(lines) == len(truth["nfe"][nfe_id]["itens"])
        assert len({r[0] for r in lines}) < len(lines)
    # the audit shows every listed invoice as new
    summary = rows(postgres, "SELECT sum(listadas), sum(novas), sum(falhas), sum(pendentes) FROM etl_window_resumo")
    assert summary[0][0] == summary[0][1] == len(truth["outgoing_ids"]) and summary[0][2] == summary[0][3] == 0


def test_rerunning_a_loaded_month_makes_zero_detail_calls_and_changes_nothing(bling, postgres, pubsub_topology):
    Pipeline(pubsub_topology).run({"month": "2026-01"})
    before = rows(postgres, "SELECT id, situacao, atualizado_em FROM nfe ORDER BY id")
    bling.reset_stats()
    Pipeline(pubsub_topology).run({"month": "2026-01"})
    stats = bling.stats()
    assert stats["requests_by_kind"].get("nfe_detail", 0) == 0
    assert stats["requests_by_kind"].get("contato", 0) == 0
    assert stats["requests_total"] == stats["requests_by_kind"]["nfe_list"]
    assert rows(postgres, "SELECT id, situacao, atualizado_em FROM nfe ORDER BY id") == before
    unchanged = rows(postgres, "SELECT count(*) FROM etl_window_nfe n JOIN etl_run r USING (run_id) "
                               "WHERE n.resultado = 'unchanged'")
    assert unchanged[0][0] == len(before)


def test_every_message_delivered_twice_and_out_of_order_loads_each_invoice_once(bling, postgres, pubsub_topology):
    Pipeline(pubsub_topology, duplicate=True, shuffle_seed=7).run({"month": "2026-02"})
    report, _, duplicates = db_report(postgres, bling, ("2026-02",))
    assert report.ok, report.summary()
    assert duplicates == []


def test_invoice_cancelled_after_loading_shows_cancelled_after_the_next_daily_run(
        sandbox, db_env, firestore_env, pubsub_topology, postgres, monkeypatch):
    monkeypatch.setenv("BLING_RATE_BUDGET_PER_S", SCALED_BUDGET)
    today = datetime.date.today()
    months = {f"{today:%Y-%m}": 40}
    server = sandbox(dataset=generate_dataset(11, months, contacts=20, products=20, cancelled_share=0.0,
                                              today=f"{today:%Y-%m-%d}"), rate_per_s=SCALED_RATE)
    authorize(server.issue_tokens())
    Pipeline(pubsub_topology).run({"daily": True})
    recent = rows(postgres, "SELECT id FROM nfe WHERE situacao <> 2 ORDER BY data_emissao DESC LIMIT 1")
    assert recent, "the daily window found no invoice to cancel"
    nfe_id = recent[0][0]
    server.cancel(nfe_id)
    server.reset_stats()
    Pipeline(pubsub_topology).run({"daily": True})
    assert rows(postgres, "SELECT situacao FROM nfe WHERE id = %s", (nfe_id,))[0][0] == 2
    assert server.stats()["requests_by_kind"]["nfe_detail"] == 1  # only the cancelled one is fetched again
    outcome = rows(postgres, "SELECT resultado FROM etl_window_nfe WHERE nfe_id = %s AND resultado = 'cancelled'",
                   (nfe_id,))
    assert outcome


@pytest.mark.parametrize("bad", [b"not json", b"", b'{"month": "2021-13"}', b'{"start": "2021-05-01", '
                                 b'"end": "2021-04-01"}', b'{"start": "2001-01-01", "end": "2021-01-01"}',
                                 b'{"month": "2021-03", "x": 1}', b"[]", b'{"month": null}'])
def test_bad_scheduler_input_is_logged_once_and_dropped(bad, db_env, pubsub_topology, capsys):
    handler("scheduler")(envelope(bad))
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    errors = [line for line in lines if line["severity"] == "ERROR"]
    assert len(errors) == 1 and errors[0]["function"] == "scheduler"
    assert errors[0]["input"] == bad.decode()
    assert pubsub_topology.pull("bling-windows", timeout_s=0.5) == []
    assert rows_from_env("SELECT count(*) FROM etl_run") == 0


def rows_from_env(sql):
    return account_db().fetch_all(sql)[0][0]


def test_listing_survives_pages_that_repeat_and_overflow(bling, postgres, pubsub_topology, monkeypatch):
    monkeypatch.setenv("LIST_PAGE_SIZE", "5")
    from shared import config
    config.reset_settings_cache()
    bling.set_faults(page_overlap=True, page_oversize=True)
    Pipeline(pubsub_topology).run({"month": "2026-01"})
    bling.set_faults()
    report, _, duplicates = db_report(postgres, bling, ("2026-01",))
    assert report.ok, report.summary()
    assert duplicates == []


def test_a_redelivered_window_resumes_from_its_checkpoint(bling, postgres, pubsub_topology, monkeypatch, capsys):
    """The lister dies after publishing page 2 (here: the third publish fails); Pub/Sub redelivers the window,
    and the listing resumes at page 3 instead of starting again."""
    monkeypatch.setenv("LIST_PAGE_SIZE", "3")
    from shared import config
    from shared.deps import Deps
    config.reset_settings_cache()
    window = {"run_id": "resume-test", "start": "2026-01-01", "end": "2026-01-31"}
    real_publish, calls = Deps.publish_json, []

    def dying_publish(deps, topic, payloads, **kwargs):
        calls.append(topic)
        if len(calls) == 3:
            raise ConnectionError("instance killed")
        return real_publish(deps, topic, payloads, **kwargs)

    monkeypatch.setattr(Deps, "publish_json", dying_publish)
    with pytest.raises(ConnectionError):
        handler("lister")(envelope(window, "w-1"))
    monkeypatch.setattr(Deps, "publish_json", real_publish)
    capsys.readouterr()
    handler("lister")(envelope(window, "w-1"))  # Pub/Sub redelivers the same message
    pages = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"page listed"' in line]
    assert (pages[0]["listing"], pages[0]["page"]) == ("default", 3), "the redelivered window started again"
    Pipeline(pubsub_topology).drain()
    report, _, duplicates = db_report(postgres, bling, ("2026-01",))
    assert report.ok, report.summary()
    assert duplicates == []
