"""Bling's JSON to table rows, without a database: the NF-e header, its item lines and parcelas, contacts and
products (the mappers the store layer's upserts are fed with)."""
from __future__ import annotations

import datetime
import decimal

from shared import enrichment, nfe_store

TZ = "America/Sao_Paulo"
NFE = {
    "id": 9, "tipo": 1, "situacao": 5, "numero": "000123", "serie": "1", "dataEmissao": "2026-01-31 23:30:00",
    "chaveAcesso": "3526", "valorNota": decimal.Decimal("150.10"), "valorFrete": "0",
    "contato": {"id": 77, "nome": "Ana", "numeroDocumento": "123", "endereco": {"municipio": "Campinas", "uf": "SP"}},
    "naturezaOperacao": {"id": 0}, "loja": {"id": 5, "numero": "L5"},
    "itens": [{"codigo": "A-1", "quantidade": decimal.Decimal("2"), "valor": decimal.Decimal("50.05"),
               "impostos": {"icms": decimal.Decimal("1.10")}},
              {"codigo": "A-1", "quantidade": decimal.Decimal("1"), "valor": decimal.Decimal("50.00")},
              {"codigo": "  ", "descricao": "frete"}],
    "parcelas": [{"data": "2026-02-28", "valor": decimal.Decimal("150.10"), "formaPagamento": {"id": 31}},
                 {"data": None, "valor": None}],
}


def test_the_header_row_maps_bling_names_to_columns_keeping_exact_values():
    row = nfe_store.header_row(NFE, TZ, "run-1", datetime.datetime(2026, 2, 1, tzinfo=datetime.UTC))
    assert (row["id"], row["tipo"], row["situacao"], row["numero"], row["serie"]) == (9, 1, 5, "000123", 1)
    assert row["valor_nota"] == decimal.Decimal("150.10") and row["valor_frete"] == decimal.Decimal("0")
    # São Paulo wall time, kept as an instant (02:30 UTC the next day) and as Bling wrote it.
    assert row["data_emissao"] == datetime.datetime(2026, 2, 1, 2, 30, tzinfo=datetime.UTC)
    assert row["data_emissao_raw"] == "2026-01-31 23:30:00"
    assert (row["contato_id"], row["contato_nome"], row["contato_municipio"], row["contato_uf"]) == (
        77, "Ana", "Campinas", "SP")
    assert row["natureza_operacao_id"] is None, "id 0 is no id"
    assert (row["loja_id"], row["loja_numero"], row["ultima_execucao"]) == (5, "L5", "run-1")


def test_item_lines_keep_their_order_and_the_same_sku_twice_stays_two_lines():
    rows = nfe_store.item_rows(9, NFE)
    assert [(r[0], r[1], r[2]) for r in rows] == [(9, 1, "A-1"), (9, 2, "A-1"), (9, 3, "  ")]
    assert rows[0][5] == decimal.Decimal("2") and rows[0][6] == decimal.Decimal("50.05")
    assert '"icms":1.10' in rows[0][-1]
    assert nfe_store.item_skus(NFE) == ["A-1"], "blank SKUs are not looked up, repeated ones once"


def test_parcelas_map_dates_amounts_and_payment_forms():
    rows = nfe_store.parcela_rows(9, NFE)
    assert rows == [(9, 1, datetime.date(2026, 2, 28), decimal.Decimal("150.10"), None, None, 31),
                    (9, 2, None, None, None, None, None)]
    assert nfe_store.payment_form_ids(NFE) == {31}


def test_an_nfe_without_lists_has_no_lines():
    bare = {"id": 1, "itens": None, "parcelas": None}
    assert nfe_store.item_rows(1, bare) == [] and nfe_store.parcela_rows(1, bare) == []


def test_a_contact_bling_does_not_have_is_recorded_as_not_found():
    assert enrichment.contact_row(5, None) == {**dict.fromkeys(enrichment.contact_row(5, None)), "id": 5,
                                               "encontrado": False}
    row = enrichment.contact_row(5, {"id": 5, "nome": "Loja", "endereco": {"geral": {"cep": "13000-000"}},
                                     "vendedor": {"id": 8}, "indicadorIe": "9"})
    assert (row["encontrado"], row["nome"], row["cep"], row["vendedor_id"], row["indicador_ie"]) == (
        True, "Loja", "13000-000", 8, 9)
    assert row["raw"] is not None


def test_a_product_row_prefers_the_detail_and_its_supplier_cost():
    listed = {"id": 3, "codigo": "A-1", "nome": "from list", "precoCusto": decimal.Decimal("1.00"),
              "idProdutoPai": 2}
    detail = {"id": 3, "codigo": "A-1", "nome": "from detail", "fornecedor": {"precoCusto": decimal.Decimal("1.50")},
              "tributacao": {"ncm": "1234"}}
    row = enrichment.product_row(3, listed, detail)
    assert (row["nome"], row["preco_custo"], row["ncm"], row["id_produto_pai"]) == (
        "from detail", decimal.Decimal("1.50"), "1234", 2)
    only_listed = enrichment.product_row(3, listed, None)
    assert (only_listed["nome"], only_listed["preco_custo"]) == ("from list", decimal.Decimal("1.00"))
