"""Issue 10.2: one record that keeps failing with a retryable error must not starve its message.

Bling is the sandbox behind a proxy (tests/integration/data/failing_bling.py) that answers 503 (or 429, or truncated
JSON) for
chosen records on every request; the pipeline runs in process with Pub/Sub's redelivery modelled by the driver
(deliveryAttempt 1..5, then the dead-letter topic), and the Bling client's backoffs scaled down (its retry counts
are the real ones)."""
from __future__ import annotations

import datetime
import json

import pytest

from shared import audit, config, record_failures, topology
from shared.bling import client as bling_client
from shared.bling.errors import BlingDailyLimit, BlingReauthorizationRequired, BlingRetryableError
from shared.bling.retry_policy import POLICY, scaled
from shared.deps import Deps
from shared.errors import RetryableError
from shared.messages import NoteRef, Window
from shared.ops import reconcile
from tests.chaos.reliability import record
from tests.integration.data.failing_bling import running
from tests.integration.data.pipeline_driver import Pipeline, envelope, handler, rows, use_deps
from tests.integration.process_deps import account_db, authorize

MONTH = "2026-01"
WINDOW = "2026-01-01..2026-01-31"


@pytest.fixture
def bling(sandbox, db_env, firestore_env, pubsub_topology, monkeypatch):
    monkeypatch.setenv("BLING_RATE_BUDGET_PER_S", "28")
    server = sandbox("small", rate_per_s=30.0)
    authorize(server.issue_tokens())
    for proxy in running(server.api_base):
        config.reset_settings_cache()
        use_deps(Deps(config.read_settings(), bling_policy=scaled(POLICY, 0.01)))
        proxy.server = server
        yield proxy


def january(server) -> list[int]:
    truth = server.truth()
    return sorted(i for i in truth["outgoing_ids"] if truth["nfe"][i]["dataEmissao"].startswith(MONTH))


def listed(server, run_id: str, ids: list[int]) -> dict:
    """The detail message of these ids, listed in the audit of a January window of run_id."""
    truth = server.truth()["nfe"]
    window = Window(run_id, datetime.date(2026, 1, 1), datetime.date(2026, 1, 31))
    audit.ensure_window(account_db(), window)
    audit.record_listed(account_db(), window, [NoteRef(i, truth[i]["situacao"]) for i in ids])
    return {"run_id": run_id, "window": window.key, "notes": [{"id": i, "situacao": truth[i]["situacao"]} for i in ids]}


def failed_in_audit(postgres) -> dict[int, str]:
    return {r[0]: r[1] for r in rows(postgres, "SELECT nfe_id, detalhe FROM etl_window_nfe WHERE resultado = 'failed'")}


def test_invoices_that_always_answer_503_cost_no_other_invoice_and_are_recorded_failed(
        bling, postgres, pubsub_topology, capsys):
    ids = january(bling.server)
    bad = [ids[1], ids[4], ids[8]]
    for nfe_id in bad:
        bling.fail(f"/nfe/{nfe_id}", 503)
    pipeline = Pipeline(pubsub_topology, redeliver=True)
    pipeline.run({"month": MONTH})

    stored = {r[0] for r in rows(postgres, "SELECT id FROM nfe")}
    assert stored == set(ids) - set(bad), f"missing: {sorted(set(ids) - set(bad) - stored)}"
    assert pipeline.dead_letters == {r.topic: [] for r in topology.ROUTES}
    failed = failed_in_audit(postgres)
    assert set(failed) == set(bad)
    assert all("503" in detail for detail in failed.values()), failed
    # every contact and SKU of the stored invoices was enriched
    assert rows(postgres, "SELECT count(*) FROM nfe n LEFT JOIN contato c ON c.id = n.contato_id "
                          "WHERE n.contato_id IS NOT NULL AND c.id IS NULL") == [(0,)]
    assert rows(postgres, "SELECT count(*) FROM nfe_item i LEFT JOIN produto_sku s ON s.codigo = i.codigo "
                          "WHERE btrim(i.codigo) <> '' AND s.codigo IS NULL") == [(0,)]
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    errors = [x for x in lines if x["severity"] == "ERROR"]
    assert sorted(x.get("nfe_id") for x in errors if x.get("event") == "nfe_failed") == sorted(bad)
    # reconcile shows them: missing from the database, and failed in the audit with their error
    bling.heal()
    capsys.readouterr()
    assert reconcile.main(["--month", MONTH, "--json"]) == 1
    out = capsys.readouterr().out
    report = json.loads(out[out.index("["):])[0]
    assert report["missing"] == sorted(bad)
    assert sorted(f["nfe_id"] for f in report["failed_in_audit"]) == sorted(bad)
    assert all("503" in f["detalhe"] for f in report["failed_in_audit"])
    contacts = rows(postgres, "SELECT count(*) FROM contato")[0][0]
    record("one invoice always answering 503", fault=f"GET /nfe/{{id}} of 3 of the {len(ids)} January invoices "
           "answers 503 (nginx HTML) on every request; Pub/Sub redelivery modelled (5 attempts, then dead letter)",
           outcome=f"{len(stored)} other invoices and {contacts} contacts stored, 0 dead letters; the 3 recorded "
                   f"failed in the audit with their 503 and shown by reconcile (failed_in_audit); "
                   f"{pipeline.delivered['bling-nfe']} detail deliveries, {sum(bling.answered.values())} 503 answers",
           ok=True, stored=len(stored), failed=len(failed), contacts=contacts)


def test_a_batch_whose_every_invoice_fails_is_retried_whole_then_split_on_its_last_attempt(
        bling, postgres, pubsub_topology):
    """Nothing in the batch succeeded: that may be Bling down for everyone, so the batch is redelivered as a whole
    (no fan-out of one message per id); only its last delivery splits it, so each id gets attempts of its own and
    ends recorded as failed, not dead-lettered with the batch."""
    ids = january(bling.server)[:3]
    batch = listed(bling.server, "r-all-bad", ids)
    for nfe_id in ids:
        bling.fail(f"/nfe/{nfe_id}", "truncated")
    last = topology.NFE.max_delivery_attempts
    for attempt in range(1, last):
        with pytest.raises(RetryableError):
            handler("detail")(envelope(batch, "batch-all-bad", attempt))
        # no wait: a split is published before the handler returns (a late one would be in `split` below)
        assert pubsub_topology.pull("bling-nfe", timeout_s=0) == [], "split before the last attempt"
    handler("detail")(envelope(batch, "batch-all-bad", last))  # acknowledged: split
    split = pubsub_topology.pull_data("bling-nfe")
    assert sorted(m["notes"][0]["id"] for m in split) == ids and all(len(m["notes"]) == 1 for m in split)
    pipeline = Pipeline(pubsub_topology, redeliver=True)
    for message in split:
        pipeline.deliver("bling-nfe", message)
    assert pipeline.dead_letters["bling-nfe"] == []
    assert set(failed_in_audit(postgres)) == set(ids)
    assert pipeline.delivered["bling-nfe"] == 3 * last


def test_429_that_outlives_the_retries_is_not_split_per_invoice(bling, postgres, pubsub_topology):
    ids = january(bling.server)[:2]
    truth = bling.server.truth()["nfe"]
    bling.fail(f"/nfe/{ids[1]}", 429)
    batch = {"run_id": "r429", "window": WINDOW, "notes": [{"id": i, "situacao": truth[i]["situacao"]} for i in ids]}
    with pytest.raises(RetryableError):
        handler("detail")(envelope(batch, "batch-429", topology.NFE.max_delivery_attempts))
    assert pubsub_topology.pull("bling-nfe", timeout_s=0.3) == []
    assert failed_in_audit(postgres) == {}


@pytest.mark.parametrize("error, per_record", [
    (BlingRetryableError(503, path="/nfe/1"), True),
    (BlingRetryableError(502, path="/contatos/1"), True),
    (BlingRetryableError(0, "timeout", path="/nfe/1"), True),
    (BlingRetryableError(200, "invalid_json", path="/nfe/1"), True),
    (BlingRetryableError(429, "TOO_MANY_REQUESTS", path="/nfe/1"), False),
    (BlingRetryableError(401, "invalid_token", path="/nfe/1"), False),
    (BlingDailyLimit(429, "TOO_MANY_REQUESTS", path="/nfe/1"), False),
    (BlingReauthorizationRequired(400, "invalid_grant", path="/oauth/token"), False),
    (RetryableError("database unavailable: InterfaceError"), False),
    (ConnectionError("reset"), False),
])
def test_only_a_records_own_bling_call_failing_transiently_is_a_per_record_failure(error, per_record):
    assert record_failures.is_record_transient(error) is per_record


def test_a_contact_that_always_answers_503_does_not_block_the_other_contacts_and_skus(
        bling, postgres, pubsub_topology, capsys):
    truth = bling.server.truth()
    contacts = sorted({n["contato"]["id"] for n in truth["nfe"].values() if n.get("contato", {}).get("id")})[:4]
    skus = sorted({it["codigo"] for n in truth["nfe"].values() for it in n.get("itens") or [] if it.get("codigo")})[:5]
    bad = contacts[1]
    bling.fail(f"/contatos/{bad}", 503)
    pipeline = Pipeline(pubsub_topology, redeliver=True)
    pipeline.deliver("bling-enrich", {"run_id": "r-enrich", "contact_ids": contacts, "skus": skus})
    pipeline.drain()
    assert {r[0] for r in rows(postgres, "SELECT id FROM contato")} == set(contacts) - {bad}
    assert {r[0] for r in rows(postgres, "SELECT codigo FROM produto_sku")} == set(skus)
    assert pipeline.dead_letters["bling-enrich"] == []
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    failed = [x for x in lines if x.get("event") == "enrich_failed"]
    assert [x["contato_id"] for x in failed] == [bad] and failed[0]["severity"] == "ERROR"


def test_without_delivery_attempt_in_the_push_the_failed_deliveries_are_counted(bling, postgres, pubsub_topology):
    """Google's Pub/Sub emulator sends no deliveryAttempt: the local stack's last attempt is counted in PostgreSQL,
    so a record still ends recorded failed, not in the dead-letter topic."""
    nfe_id = january(bling.server)[0]
    one = listed(bling.server, "r-no-attempt", [nfe_id])
    bling.fail(f"/nfe/{nfe_id}", 503)
    for _ in range(topology.NFE.max_delivery_attempts - 1):
        with pytest.raises(RetryableError):
            handler("detail")(envelope(one, "one-id"))
    assert failed_in_audit(postgres) == {}
    handler("detail")(envelope(one, "one-id"))  # the 5th failed delivery: given up, acknowledged
    assert set(failed_in_audit(postgres)) == {nfe_id}
