"""local/verify.py itself: a database filled straight from the truth passes; each kind of damage is reported."""
from __future__ import annotations

import datetime
import decimal
import json
from zoneinfo import ZoneInfo

import pytest

from local import verify
from local.sandbox.dataset import build_account_dataset, build_profile
from local.sandbox.jsonutil import dumps

MONTHS = ("2026-01", "2026-02")
TZ = ZoneInfo("America/Sao_Paulo")


def _load(conn, truth, months):
    """Fill the tables straight from the truth with plain SQL (independent of the pipeline's code)."""
    exp = verify.expected_from_truth(truth, months)
    cur = conn.cursor()
    for fid in exp.payment_form_ids:
        f = truth["payment_forms"][fid]
        cur.execute("INSERT INTO forma_pagamento (id, descricao, tipo_pagamento) VALUES (%s, %s, %s)",
                    (fid, f["descricao"], f["tipoPagamento"]))
    for cid in exp.contact_ids:
        c = truth["contacts"].get(cid)
        cur.execute("INSERT INTO contato (id, encontrado, nome, numero_documento, email) VALUES (%s, %s, %s, %s, %s)",
                    (cid, c is not None, c and c["nome"], c and c["numeroDocumento"], c and (c["email"] or None)))
    for sku in exp.skus:
        ids = exp.sku_to_products[sku]
        if ids:
            p = truth["products"][ids[0]]
            cur.execute("INSERT INTO produto (id, codigo, nome, situacao, preco, preco_custo, raw) VALUES "
                        "(%s, %s, %s, %s, %s, %s, '{}') ON CONFLICT DO NOTHING",
                        (p["id"], p["codigo"], p["nome"], p["situacao"], p["preco"], p["fornecedor"]["precoCusto"]))
        cur.execute("INSERT INTO produto_sku (codigo, produto_id, encontrado) VALUES (%s, %s, %s)",
                    (sku, ids[0] if ids else None, bool(ids)))
    for nid, n in exp.nfe.items():
        emitted = datetime.datetime.strptime(n["dataEmissao"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=TZ)
        cur.execute("INSERT INTO nfe (id, tipo, situacao, numero, serie, chave_acesso, contato_id, valor_nota, "
                    "valor_frete, data_emissao_raw, data_emissao, raw) VALUES "
                    "(%s, 1, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb)",
                    (nid, n["situacao"], n["numero"], n["serie"], n["chaveAcesso"], n["contato"]["id"],
                     n["valorNota"], n["valorFrete"], n["dataEmissao"], emitted, dumps(n).decode()))
        for line, it in enumerate(n["itens"], start=1):
            cur.execute("INSERT INTO nfe_item (nfe_id, linha, codigo, descricao, unidade, quantidade, valor, "
                        "valor_total) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                        (nid, line, it["codigo"], it["descricao"], it["unidade"], it["quantidade"], it["valor"],
                         it["valorTotal"]))
        for line, p in enumerate(n["parcelas"], start=1):
            cur.execute("INSERT INTO nfe_parcela (nfe_id, linha, data, valor, forma_pagamento_id) VALUES "
                        "(%s, %s, %s, %s, %s)", (nid, line, datetime.date.fromisoformat(p["data"]), p["valor"],
                                                 p["formaPagamento"]["id"]))
    conn.commit()
    return exp


@pytest.fixture
def truth():
    # Through JSON, exactly as GET /__admin/truth delivers it.
    raw = dumps(build_profile("small").truth())
    return verify.normalize_truth(json.loads(raw, parse_float=decimal.Decimal))


@pytest.fixture
def conn(db_env, postgres):
    c = postgres.connect()
    yield c
    c.close()


def test_exact_copy_passes(conn, truth):
    exp = _load(conn, truth, MONTHS)
    report = verify.verify(conn, truth, MONTHS)
    assert report.ok, report.summary()
    assert verify.is_complete(conn, truth, MONTHS)
    assert verify.duplicate_report(conn) == []
    assert report.counts["nfe"] == len(exp.nfe) and report.counts["nfe_item"] == exp.item_lines
    assert any(n["situacao"] == 2 for n in exp.nfe.values()), "the small profile should carry a cancelled NF-e"
    assert any(not exp.sku_to_products[s] for s in exp.skus), "the small profile should carry an unknown SKU"


def test_each_kind_of_damage_is_reported(conn, truth):
    exp = _load(conn, truth, MONTHS)
    cur = conn.cursor()
    some_nfe = sorted(exp.nfe)[0]
    other_nfe = sorted(exp.nfe)[1]
    cur.execute("UPDATE nfe_item SET quantidade = quantidade + 0.0001 WHERE nfe_id = %s AND linha = 1", (some_nfe,))
    cur.execute("DELETE FROM nfe WHERE id = %s", (other_nfe,))
    incoming = truth["incoming_ids"][0]
    n = truth["nfe"][incoming]
    cur.execute("INSERT INTO nfe (id, tipo, situacao, raw) VALUES (%s, 1, %s, '{}')", (incoming, n["situacao"]))
    unknown = next(s for s in exp.skus if not exp.sku_to_products[s])
    any_product = next(iter(truth["products"]))
    cur.execute("INSERT INTO produto (id, codigo, raw) VALUES (%s, %s, '{}') ON CONFLICT DO NOTHING",
                (any_product, truth["products"][any_product]["codigo"]))
    cur.execute("UPDATE produto_sku SET encontrado = true, produto_id = %s WHERE codigo = %s", (any_product, unknown))
    conn.commit()
    report = verify.verify(conn, truth, MONTHS)
    text = report.summary()
    assert not report.ok
    assert f"nfe_item {some_nfe}/1: quantidade" in text
    assert f"nfe {other_nfe} " in text and "missing" in text
    assert f"nfe {incoming} stored but should not be: an incoming NF-e" in text
    assert f"produto_sku {unknown!r} (unknown to Bling): encontrado" in text
    assert not verify.is_complete(conn, truth, MONTHS)


@pytest.fixture
def account_schema(db_env, postgres):
    """An account's schema made as the connect flow makes it (shared.migrate), dropped after the test."""
    from shared import migrate
    from shared.accounts import schema_for
    from tests.integration.process_deps import database

    migrate.ensure_account_schema(database(), "verify-a")
    schema = schema_for("verify-a")
    yield schema
    c = postgres.connect()
    try:
        c.cursor().execute("DO $$ BEGIN EXECUTE format('DROP SCHEMA %I CASCADE', 'bling_verify_a'); END $$")
        c.commit()
    finally:
        c.close()


def test_an_account_schema_is_checked_on_its_own(conn, truth, account_schema):
    """schema=: the checks read that schema only (no fallback to public), and foreign_rows names rows that belong
    to another account's truth."""
    cur = conn.cursor()
    cur.execute("SELECT set_config('search_path', %s, false)", (account_schema,))
    exp = _load(conn, truth, MONTHS)
    cur.execute("SELECT set_config('search_path', 'public', false)")
    conn.commit()
    report = verify.verify(conn, truth, MONTHS, schema=account_schema)
    assert report.ok, report.summary()
    assert verify.is_complete(conn, truth, MONTHS, schema=account_schema)
    assert verify.duplicate_report(conn, schema=account_schema) == []
    assert verify.db_counts(conn, schema=account_schema)["nfe"] == len(exp.nfe)
    assert verify.schema_tables(conn, account_schema) >= set(verify.TABLES)
    # The data went to the account's schema only: public holds none of its rows (nor, since the test stack adopts
    # public into the default account, any of its tables).
    public = verify.schema_tables(conn, "public") & set(verify.TABLES)
    assert not public or set(verify.db_counts(conn, schema="public").values()) == {0}
    other = verify.normalize_truth(json.loads(dumps(build_account_dataset("small", 7, 1).truth()),
                                              parse_float=decimal.Decimal))
    assert verify.foreign_rows(conn, other, schema=account_schema) == []
    own = verify.foreign_rows(conn, truth, schema=account_schema)
    assert own and own[0].startswith("nfe: "), own  # the check does find rows when they are there


def test_a_schema_name_that_is_not_an_identifier_is_refused(conn):
    with pytest.raises(ValueError, match="not a schema name"):
        verify.db_counts(conn, schema="bling_a, public")
