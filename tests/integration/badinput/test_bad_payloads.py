"""Bling answering with odd but possible payloads, through the whole in-process pipeline (scheduler → lister →
detail → enrich): the sandbox's own dataset is edited, so the listing, the detail and the truth all agree, and
the database must still equal the truth with no duplicate row. What PostgreSQL cannot hold is refused per
invoice (recorded failed, one ERROR) without holding back the rest of its batch."""
from __future__ import annotations

import json

from local import verify
from tests.chaos.reliability import record
from tests.integration.badinput.helpers import errors, log_lines
from tests.integration.data.pipeline_driver import Pipeline
from tests.integration.data.pipeline_driver import rows as one

MONTH = "2026-01"
HUGE = "Descrição longa ✓ " * 6_000  # about 100 kB of non-ASCII text
NAMES = ("Ñandú Açaí & Filhos 😀", "北京贸易有限公司", "שלום עליכם",
         "O'Brien \"quoted\" \\ back\\slash", "zero\u200bwidth and \u202eright-to-left")


def january(server) -> list[int]:
    """Outgoing January invoices the fixture has not stored yet (a stored one whose situação did not change is
    not fetched again, by design)."""
    return sorted(i for i, n in server.app.dataset.nfe.items() if n["tipo"] == 1 and n["dataEmissao"][:7] == MONTH
                  and i not in server.seeded_ids)


def edit(server, nfe_id: int, change) -> None:
    with server.app.lock:
        change(server.app.dataset.nfe[nfe_id])


def truth(server) -> dict:
    """The sandbox's truth; its summary code expects lists, so null ones are read as empty while it runs (the
    verifier treats null and empty alike)."""
    with server.app.lock:
        nulled = [(n, k) for n in server.app.dataset.nfe.values() for k in ("itens", "parcelas") if n.get(k) is None]
        for n, k in nulled:
            n[k] = []
        try:
            return verify.normalize_truth(server.truth())
        finally:
            for n, k in nulled:
                n[k] = None


def db_report(postgres, server):
    conn = postgres.connect()
    try:
        return verify.verify(conn, truth(server), [MONTH]), verify.duplicate_report(conn)
    finally:
        conn.close()


def test_odd_payloads_load_exactly_as_bling_sent_them(bling, postgres, pubsub_topology, capsys):
    ids = january(bling)
    nulls, no_fields, unknown_situacao, huge = ids[:4]
    by_contact = {}
    for nfe_id in ids[4:]:
        by_contact.setdefault(bling.app.dataset.nfe[nfe_id]["contato"]["id"], nfe_id)
    names = list(by_contact.values())[:len(NAMES)]  # one invoice per contact, so each name is the contact's
    assert len(names) == len(NAMES)

    def null_lists(n):
        n["itens"] = None
        n["parcelas"] = None

    def missing_fields(n):
        for key in ("valorNota", "valorFrete", "numero", "chaveAcesso", "serie", "contato", "transporte",
                    "naturezaOperacao", "loja", "vendedor", "linkDanfe", "xml"):
            n.pop(key, None)

    edit(bling, nulls, null_lists)
    edit(bling, no_fields, missing_fields)
    edit(bling, unknown_situacao, lambda n: n.update(situacao=12))
    edit(bling, huge, lambda n: n["itens"][0].update(descricao=HUGE))
    contacts = []
    for nfe_id, name in zip(names, NAMES):
        edit(bling, nfe_id, lambda n, name=name: (n["contato"].update(nome=name),
                                                  n["itens"][0].update(descricao=name)))
        contact_id = bling.app.dataset.nfe[nfe_id]["contato"]["id"]
        with bling.app.lock:
            bling.app.dataset.contacts[contact_id]["nome"] = name
        contacts.append((contact_id, name))
    capsys.readouterr()

    Pipeline(pubsub_topology).run({"month": MONTH})

    lines = log_lines(capsys.readouterr().out)
    report, duplicates = db_report(postgres, bling)
    assert report.ok, report.summary()
    assert duplicates == []
    assert errors(lines) == []
    assert one(postgres, "SELECT count(*) FROM nfe_item WHERE nfe_id = %s", (nulls,))[0][0] == 0
    assert one(postgres, "SELECT count(*) FROM nfe_parcela WHERE nfe_id = %s", (nulls,))[0][0] == 0
    assert one(postgres, "SELECT situacao FROM nfe WHERE id = %s", (unknown_situacao,))[0][0] == 12
    row = one(postgres, "SELECT valor_nota, numero, contato_id, serie FROM nfe WHERE id = %s", (no_fields,))[0]
    assert list(row) == [None, None, None, None]
    assert one(postgres, "SELECT descricao FROM nfe_item WHERE nfe_id = %s AND linha = 1", (huge,))[0][0] == HUGE
    raw = one(postgres, "SELECT raw::text FROM nfe WHERE id = %s", (huge,))[0][0]
    assert HUGE in json.loads(raw)["itens"][0]["descricao"]
    for contact_id, name in contacts:
        assert one(postgres, "SELECT nome FROM contato WHERE id = %s", (contact_id,))[0][0] == name
    record("odd Bling payloads", fault="itens and parcelas null; 12 header fields missing (contato, valorNota, "
           "numero, serie...); situacao 12; a 100 kB non-ASCII description; names in emoji, Chinese, Hebrew, "
           "quotes and backslashes, zero-width and right-to-left marks",
           outcome=f"month loaded, DB = truth ({report.counts['nfe']} NF-e), 0 duplicates, 0 ERROR; nulls stored "
                   "as no lines, missing fields as NULL, text byte for byte", ok=True)


def test_values_postgresql_cannot_hold_fail_one_invoice_and_not_its_batch(bling, postgres, pubsub_topology, capsys):
    """A serie beyond PostgreSQL's integer and a situação beyond smallint: the first is refused by the database
    when stored, the second already in the listing. Each gives one ERROR naming the invoice; every other invoice
    of the month is stored, and no message is left to be redelivered forever."""
    ids = january(bling)
    serie_overflow, situacao_overflow = ids[0], ids[1]
    edit(bling, serie_overflow, lambda n: n.update(serie=3_000_000_000))
    edit(bling, situacao_overflow, lambda n: n.update(situacao=40000))
    capsys.readouterr()

    Pipeline(pubsub_topology).run({"month": MONTH})  # raises if a handler asks for a redelivery

    found = errors(log_lines(capsys.readouterr().out))
    assert len(found) == 2, found
    by_invoice = {e.get("nfe_id"): e for e in found}
    assert serie_overflow in by_invoice and "not loaded" in by_invoice[serie_overflow]["message"]
    listing_error = next(e for e in found if e is not by_invoice.get(serie_overflow))
    assert "valid id/situacao" in listing_error["message"] and str(situacao_overflow) in listing_error["item"]
    stored = {r[0] for r in one(postgres, "SELECT id FROM nfe")}
    assert stored == set(verify.expected_from_truth(truth(bling), [MONTH]).nfe) - {
        serie_overflow, situacao_overflow}
    assert one(postgres, "SELECT resultado FROM etl_window_nfe WHERE nfe_id = %s", (serie_overflow,))[0][0] == "failed"
    record("values PostgreSQL cannot hold", fault="an NF-e with serie 3,000,000,000 (beyond integer) and one with "
           "situacao 40000 (beyond smallint)",
           outcome=f"2 ERROR lines naming them (one from the lister, one 'failed' in the audit); the other "
                   f"{len(stored)} invoices of the month stored; nothing redelivered", ok=True)


def test_an_over_long_sku_does_not_cost_the_batch_its_contacts(bling, postgres, pubsub_topology, capsys):
    """Bling has no product with a 300-character code, but an item may carry one: the SKU is recorded as unknown
    and the enrichment of everything else in the batch still happens."""
    ids = january(bling)
    long_sku = "SKU-" + "x" * 296
    edit(bling, ids[0], lambda n: n["itens"][0].update(codigo=long_sku))
    capsys.readouterr()

    Pipeline(pubsub_topology).run({"month": MONTH})

    assert errors(log_lines(capsys.readouterr().out)) == []
    report, duplicates = db_report(postgres, bling)
    assert report.ok, report.summary()
    assert duplicates == []
    assert one(postgres, "SELECT encontrado FROM produto_sku WHERE codigo = %s", (long_sku,))[0][0] is False
    record("over-long SKU", fault="an item whose codigo is 300 characters",
           outcome="recorded as unknown without a lookup; the batch's contacts and SKUs enriched; DB = truth", ok=True)
