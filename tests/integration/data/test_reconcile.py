"""Reconciliation finds what is missing or stale in PostgreSQL compared with Bling, and --repair fixes it through
the pipeline itself."""
from __future__ import annotations

import json

from shared.ops import reconcile
from tests.integration.data.pipeline_driver import Pipeline
from tests.integration.data.test_pipeline import bling, db_report
from tests.integration.process_deps import account_db


def run_reconcile(capsys, *args):
    capsys.readouterr()
    status = reconcile.main(["--month", "2026-01", "--json", *args])
    out = capsys.readouterr().out
    report = json.loads(out[out.index("["):])
    return status, report[0]


def test_a_loaded_month_reconciles_without_gaps(bling, postgres, pubsub_topology, capsys):
    Pipeline(pubsub_topology).run({"month": "2026-01"})
    status, report = run_reconcile(capsys)
    assert status == 0 and report["gaps"] == 0
    assert report["listed"] == report["stored"] > 0
    # the sandbox deliberately has invoices whose parcelas do not add up to valorNota: flagged, not a gap
    mismatches = set(bling.truth()["payment_mismatch_ids"])
    assert {r["nfe_id"] for r in report["payments_differ_from_total"]} <= mismatches


def test_missing_and_stale_invoices_are_reported_and_repaired(bling, postgres, pubsub_topology, capsys):
    Pipeline(pubsub_topology).run({"month": "2026-01"})
    (lost_id,), (stale_id,) = account_db().fetch_all("SELECT id FROM nfe WHERE situacao <> 2 ORDER BY id LIMIT 2")
    account_db().execute("DELETE FROM nfe WHERE id = %s", (lost_id,))
    bling.cancel(stale_id)  # cancelled in Bling after it was loaded
    contact = account_db().fetch_all("SELECT contato_id FROM nfe WHERE contato_id IS NOT NULL LIMIT 1")[0][0]
    account_db().execute("DELETE FROM contato WHERE id = %s", (contact,))

    status, report = run_reconcile(capsys)
    assert status == 1
    assert report["missing"] == [lost_id]
    assert report["situacao_differs"] == [{"nfe_id": stale_id, "bling": 2, "stored": account_db().fetch_all(
        "SELECT situacao FROM nfe WHERE id = %s", (stale_id,))[0][0]}]
    assert report["unresolved_contacts"] == [contact]

    status, _ = run_reconcile(capsys, "--repair")
    Pipeline(pubsub_topology).drain()
    status, report = run_reconcile(capsys)
    assert status == 0 and report["gaps"] == 0
    verified, _, duplicates = db_report(postgres, bling, ("2026-01",))
    assert verified.ok, verified.summary()
    assert duplicates == []
