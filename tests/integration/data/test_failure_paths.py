"""Issue 10 items that need PostgreSQL, the sandbox and the emulators but no process of their own: NUL characters
(10.5), a stale detail fetch committing last (10.6), payment forms not found re-checked (10.14), and the
run_completed event (for the missed-run alert)."""
from __future__ import annotations

import datetime
import json

import pytest

from shared import audit, nfe_detail, payment_forms
from shared.messages import NfeBatch, NoteRef, Window
from tests.integration.data.pipeline_driver import Pipeline, envelope, handler, rows
from tests.integration.data.test_pipeline import bling
from tests.integration.process_deps import account_client, account_db, current_deps

MONTH = "2026-01"


def settings():
    return current_deps().settings


def log_lines(capsys) -> list[dict]:
    return [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]


def january(server) -> list[int]:
    truth = server.truth()
    return sorted(i for i in truth["outgoing_ids"] if truth["nfe"][i]["dataEmissao"].startswith(MONTH))


# -------------------------------------------------------------------------------------------- 10.5 NUL characters

def test_a_nul_character_in_any_entity_is_stripped_and_the_record_stored(bling, postgres, pubsub_topology):
    dataset = bling.app.dataset
    codes = {p.get("codigo") for p in dataset.products.values()}
    nfe_id = next(i for i in january(bling) if dataset.nfe[i]["itens"] and dataset.nfe[i]["parcelas"]
                  and dataset.nfe[i]["contato"]["id"] in dataset.contacts
                  and dataset.nfe[i]["itens"][0]["codigo"] in codes)
    with bling.app.lock:
        note = dataset.nfe[nfe_id]
        note["numeroPedidoLoja"] = "PED\x00-1"
        note["campo\x00extra"] = "valor\x00"  # a key with NUL: only in raw
        note["itens"][0]["descricao"] = "Camisa\x00 azul"
        note["parcelas"][0]["observacoes"] = "obs\x00"
        contact = dataset.contacts[note["contato"]["id"]]
        contact["nome"] = "Ana\x00 Maria"
        sku = note["itens"][0]["codigo"]
        product = next(p for p in dataset.products.values() if p.get("codigo") == sku)
        product["nome"] = "Produto\x00 X"
        form_id = note["parcelas"][0]["formaPagamento"]["id"]
        dataset.payment_forms[form_id]["descricao"] = "PIX\x00"
    Pipeline(pubsub_topology).run({"month": MONTH})

    assert rows(postgres, "SELECT numero_pedido_loja, raw->>'campoextra', raw->>'numeroPedidoLoja' FROM nfe "
                          "WHERE id = %s", (nfe_id,)) == [("PED-1", "valor", "PED-1")]
    assert rows(postgres, "SELECT descricao FROM nfe_item WHERE nfe_id = %s AND linha = 1", (nfe_id,)) == [
        ("Camisa azul",)]
    assert rows(postgres, "SELECT observacoes FROM nfe_parcela WHERE nfe_id = %s AND linha = 1", (nfe_id,)) == [
        ("obs",)]
    assert rows(postgres, "SELECT nome, raw->>'nome' FROM contato WHERE id = %s", (contact["id"],)) == [
        ("Ana Maria", "Ana Maria")]
    assert rows(postgres, "SELECT nome, raw->>'nome' FROM produto WHERE id = %s", (product["id"],)) == [
        ("Produto X", "Produto X")]
    assert rows(postgres, "SELECT descricao, raw->>'descricao', encontrada FROM forma_pagamento WHERE id = %s",
                (form_id,)) == [("PIX", "PIX", True)]
    assert rows(postgres, "SELECT count(*) FROM etl_window_nfe WHERE resultado = 'failed'") == [(0,)]


# ------------------------------------------------------------------------------- 10.6 a stale fetch committing last

def test_an_older_fetch_committing_last_never_reverts_a_cancellation(bling, postgres, pubsub_topology, monkeypatch):
    """Two deliveries of one invoice: the default pass's (authorized) fetches first and then sits in its
    payment-form lookups; meanwhile the invoice is cancelled in Bling and the situacao=2 pass's delivery fetches
    and commits it; then the first one commits its older fetch."""
    dataset = bling.app.dataset
    nfe_id = next(i for i in january(bling) if dataset.nfe[i]["parcelas"] and dataset.nfe[i]["situacao"] != 2)
    authorized = dataset.nfe[nfe_id]["situacao"]
    window = Window("race", datetime.date(2026, 1, 1), datetime.date(2026, 1, 31))
    audit.ensure_window(account_db(), window)
    audit.record_listed(account_db(), window, [NoteRef(nfe_id, authorized)])
    real_ensure_known, raced = payment_forms.ensure_known, []

    def lookups_while_cancelled(client, database, form_ids, max_age_days):
        if not raced:
            raced.append(True)
            bling.cancel(nfe_id)
            audit.record_listed(account_db(), window, [NoteRef(nfe_id, 2)])
            nfe_detail.process_batch(account_client(), account_db(),
                                     NfeBatch(window.run_id, window.key, (NoteRef(nfe_id, 2),)), settings())
            assert rows(postgres, "SELECT situacao FROM nfe WHERE id = %s", (nfe_id,)) == [(2,)]
        return real_ensure_known(client, database, form_ids, max_age_days)

    monkeypatch.setattr(payment_forms, "ensure_known", lookups_while_cancelled)
    outcomes = nfe_detail.process_batch(account_client(), account_db(),
                                        NfeBatch(window.run_id, window.key, (NoteRef(nfe_id, authorized),)), settings())
    assert raced
    assert rows(postgres, "SELECT situacao, (raw->>'situacao')::int FROM nfe WHERE id = %s", (nfe_id,)) == [(2, 2)]
    assert outcomes.outcomes[nfe_id] == "unchanged"


def test_a_later_fetch_never_turns_a_cancelled_invoice_back_to_authorized(bling, postgres, pubsub_topology):
    """NF-e cancellation is final in SEFAZ: whatever a later answer says (a lagging replica), cancelled stays."""
    nfe_id = next(i for i in january(bling) if bling.app.dataset.nfe[i]["situacao"] != 2)
    authorized = bling.app.dataset.nfe[nfe_id]["situacao"]
    window = Window("final", datetime.date(2026, 1, 1), datetime.date(2026, 1, 31))
    audit.ensure_window(account_db(), window)
    bling.cancel(nfe_id)
    audit.record_listed(account_db(), window, [NoteRef(nfe_id, 2)])
    nfe_detail.process_batch(account_client(), account_db(), NfeBatch(window.run_id, window.key, (NoteRef(nfe_id, 2),)),
                                     settings())
    bling.set_situacao(nfe_id, authorized)
    nfe_detail.process_batch(account_client(), account_db(),
                             NfeBatch(window.run_id, window.key, (NoteRef(nfe_id, authorized),)), settings())
    assert rows(postgres, "SELECT situacao FROM nfe WHERE id = %s", (nfe_id,)) == [(2,)]


# ------------------------------------------------------------------------------- 10.14 payment forms not found

def test_a_payment_form_recorded_not_found_is_checked_again_after_an_age(bling, postgres, monkeypatch):
    monkeypatch.setenv("ENRICH_MAX_AGE_DAYS", "30")
    from shared import config
    config.reset_settings_cache()
    old, fresh = sorted(bling.app.dataset.payment_forms)[:2]
    for form_id, age in ((old, "31 days"), (fresh, "1 day")):
        account_db().execute("INSERT INTO forma_pagamento (id, encontrada, atualizado_em) "
                   "VALUES (%s, false, now() - %s::interval)",
                   (form_id, age))
    bling.reset_stats()
    assert payment_forms.ensure_known(account_client(), account_db(), [old, fresh], settings().enrich_max_age_days) == 1
    assert bling.stats()["requests_by_kind"].get("forma_pagamento") == 1
    assert rows(postgres, "SELECT id, encontrada, descricao IS NOT NULL FROM forma_pagamento ORDER BY id") == sorted(
        [(old, True, True), (fresh, False, False)])


# --------------------------------------------------------------------------------- run_completed (missed-run alert)

def completed(lines) -> list[dict]:
    return [x for x in lines if x.get("event") == "run_completed"]


def test_run_completed_is_logged_once_per_run_even_when_every_message_is_delivered_twice(
        bling, postgres, pubsub_topology, capsys):
    capsys.readouterr()
    Pipeline(pubsub_topology, duplicate=True, shuffle_seed=3).run({"start": "2026-01-01", "end": "2026-02-28"})
    events = completed(log_lines(capsys))
    assert len(events) == 1, events
    run_id = rows(postgres, "SELECT run_id FROM etl_run")[0][0]
    assert {k: events[0][k] for k in ("run_id", "kind", "windows", "windows_failed", "severity")} == {
        "run_id": run_id, "kind": "range", "windows": 2, "windows_failed": 0, "severity": "INFO"}
    assert rows(postgres, "SELECT concluido_em IS NOT NULL FROM etl_run") == [(True,)]


def test_run_completed_counts_failed_windows_and_waits_for_the_last_one(db_env, capsys):
    windows = [Window("two-windows", datetime.date(2026, 1, 1), datetime.date(2026, 1, 31)),
               Window("two-windows", datetime.date(2026, 2, 1), datetime.date(2026, 2, 28))]
    audit.record_run(account_db(), "two-windows", "month", {"start": "2026-01-01"}, windows[0].start, windows[1].end,
                     windows)
    audit.window_listing_progress(account_db(), windows[0], "listed", 1, 1, 0)
    assert audit.complete_run_if_done(account_db(), "two-windows") is None  # February still pending
    audit.window_listing_progress(account_db(), windows[1], "failed", 0, 1, 0, "page cap")
    done = audit.complete_run_if_done(account_db(), "two-windows")
    assert done is not None and (done.kind, done.windows, done.windows_failed) == ("month", 2, 1)
    assert audit.complete_run_if_done(account_db(), "two-windows") is None  # a redelivery: never twice


def test_a_redelivered_window_of_a_completed_run_does_not_log_run_completed_again(
        bling, postgres, pubsub_topology, capsys):
    window = {"run_id": "one-window", "start": "2026-01-01", "end": "2026-01-31"}
    handler("lister")(envelope(window, "w-1"))
    handler("lister")(envelope(window, "w-1"))
    assert len(completed(log_lines(capsys))) == 1
