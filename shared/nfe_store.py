"""Upserting one NF-e (header, item lines, parcelas) in a single transaction, and reading what is stored.

Items and parcelas are replaced as a whole on every upsert, keyed by their line number: the same SKU on two lines
stays two rows, and a line Bling removed disappears. The previous situação, read under a lock, tells whether
this was a new invoice, an update, or a cancellation.

Two deliveries of one invoice may fetch it in one order and commit in the other (payment-form lookups sit between
fetch and commit). The stored row carries its fetch time (`buscado_em`), and a write never replaces a newer fetch
with an older one, nor a cancelled invoice with a non-cancelled one: NF-e cancellation is final at SEFAZ, so a
detail that still shows it authorized can only be older news. Such a write is refused as "stale".
"""
from __future__ import annotations

import dataclasses
import datetime
from typing import Any

from shared import db, jsonutil
from shared.bling_values import as_bool, as_date, as_decimal, as_id, as_int, as_list, as_local_datetime, as_text, nested
from shared.domain import SITUACAO_CANCELADA, NfeOutcome

_ITEM_COLUMNS = (
    "nfe_id", "linha", "codigo", "descricao", "unidade", "quantidade", "valor", "valor_total", "tipo", "peso_bruto",
    "peso_liquido", "numero_pedido_compra", "classificacao_fiscal", "cest", "codigo_servico", "origem",
    "informacoes_adicionais", "gtin", "cfop",
)
_PARCELA_COLUMNS = ("nfe_id", "linha", "data", "valor", "observacoes", "caut", "forma_pagamento_id")


Row = tuple[Any, ...]


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def header_row(nfe: dict[str, Any], timezone: str, run_id: str,
               fetched_at: datetime.datetime | None = None) -> dict[str, Any]:
    contato = _object(nfe.get("contato"))
    endereco = _object(contato.get("endereco"))
    transporte = _object(nfe.get("transporte"))
    return {
        "id": as_int(nfe.get("id")), "tipo": as_int(nfe.get("tipo")), "situacao": as_int(nfe.get("situacao")),
        "numero": as_text(nfe.get("numero")), "serie": as_int(nfe.get("serie")),
        "data_emissao": as_local_datetime(nfe.get("dataEmissao"), timezone),
        "data_emissao_raw": as_text(nfe.get("dataEmissao")),
        "data_operacao": as_local_datetime(nfe.get("dataOperacao"), timezone),
        "data_operacao_raw": as_text(nfe.get("dataOperacao")),
        "chave_acesso": as_text(nfe.get("chaveAcesso")),
        "contato_id": as_id(contato.get("id")), "contato_nome": as_text(contato.get("nome")),
        "contato_tipo_pessoa": as_text(contato.get("tipoPessoa")),
        "contato_numero_documento": as_text(contato.get("numeroDocumento")),
        "contato_ie": as_text(contato.get("ie")), "contato_rg": as_text(contato.get("rg")),
        "contato_contribuinte": as_int(contato.get("contribuinte")),
        "contato_telefone": as_text(contato.get("telefone")), "contato_email": as_text(contato.get("email")),
        "contato_endereco": as_text(endereco.get("endereco")), "contato_numero": as_text(endereco.get("numero")),
        "contato_complemento": as_text(endereco.get("complemento")),
        "contato_bairro": as_text(endereco.get("bairro")), "contato_cep": as_text(endereco.get("cep")),
        "contato_municipio": as_text(endereco.get("municipio")), "contato_uf": as_text(endereco.get("uf")),
        "contato_pais": as_text(endereco.get("pais")),
        "natureza_operacao_id": as_id(nested(nfe, "naturezaOperacao", "id")),
        "loja_id": as_id(nested(nfe, "loja", "id")), "loja_numero": as_text(nested(nfe, "loja", "numero")),
        "valor_nota": as_decimal(nfe.get("valorNota")), "valor_frete": as_decimal(nfe.get("valorFrete")),
        "finalidade": as_int(nfe.get("finalidade")), "tipo_nota": as_text(nfe.get("tipoNota")),
        "xml": as_text(nfe.get("xml")), "link_danfe": as_text(nfe.get("linkDanfe")),
        "link_pdf": as_text(nfe.get("linkPDF")),
        "optante_simples_nacional": as_bool(nfe.get("optanteSimplesNacional")),
        "numero_pedido_loja": as_text(nfe.get("numeroPedidoLoja")),
        "vendedor_id": as_id(nested(nfe, "vendedor", "id")),
        "transporte_frete_por_conta": as_int(transporte.get("fretePorConta")),
        "transportador_nome": as_text(nested(transporte, "transportador", "nome")),
        "transportador_numero_documento": as_text(nested(transporte, "transportador", "numeroDocumento")),
        "ultima_execucao": run_id, "buscado_em": fetched_at,
    }


def item_rows(nfe_id: int, nfe: dict[str, Any]) -> list[Row]:
    rows = []
    for line, item in enumerate(as_list(nfe.get("itens")), start=1):
        rows.append((nfe_id, line, as_text(item.get("codigo")), as_text(item.get("descricao")),
                     as_text(item.get("unidade")), as_decimal(item.get("quantidade")), as_decimal(item.get("valor")),
                     as_decimal(item.get("valorTotal")), as_text(item.get("tipo")),
                     as_decimal(item.get("pesoBruto")), as_decimal(item.get("pesoLiquido")),
                     as_text(item.get("numeroPedidoCompra")), as_text(item.get("classificacaoFiscal")),
                     as_text(item.get("cest")), as_text(item.get("codigoServico")), as_int(item.get("origem")),
                     as_text(item.get("informacoesAdicionais")), as_text(item.get("gtin")),
                     as_text(item.get("cfop")), jsonutil.dumps(item.get("impostos"))))
    return rows


def parcela_rows(nfe_id: int, nfe: dict[str, Any]) -> list[Row]:
    return [(nfe_id, line, as_date(p.get("data")), as_decimal(p.get("valor")), as_text(p.get("observacoes")),
             as_text(p.get("caut")), as_id(nested(p, "formaPagamento", "id")))
            for line, p in enumerate(as_list(nfe.get("parcelas")), start=1)]


def payment_form_ids(nfe: dict[str, Any]) -> set[int]:
    return {i for p in as_list(nfe.get("parcelas")) if (i := as_id(nested(p, "formaPagamento", "id")))}


def item_skus(nfe: dict[str, Any]) -> list[str]:
    skus = []
    for item in as_list(nfe.get("itens")):
        sku = as_text(item.get("codigo"))
        if sku and sku.strip() and sku not in skus:
            skus.append(sku)
    return skus


def stored_situacoes(cur: Any, ids: list[int]) -> dict[int, int]:
    cur.execute("SELECT id, situacao FROM nfe WHERE id = ANY(%s)", (ids,))
    return {row[0]: row[1] for row in cur.fetchall()}


_ROWS_PER_INSERT = 500  # PostgreSQL takes at most 65,535 parameters in one statement


def _insert_rows(cur: Any, table: str, columns: tuple[str, ...], rows: list[Row], casts: dict[str, str]) -> None:
    """One multi-row INSERT per 500 rows: one round trip instead of one per row (executemany)."""
    names = [*columns, *casts]
    row_placeholder = "(" + ", ".join(["%s"] * len(columns) + [f"%s::{t}" for t in casts.values()]) + ")"
    for start in range(0, len(rows), _ROWS_PER_INSERT):
        chunk = rows[start:start + _ROWS_PER_INSERT]
        cur.execute(f"INSERT INTO {table} ({', '.join(names)}) VALUES {', '.join([row_placeholder] * len(chunk))}",
                    [value for row in chunk for value in row])


@dataclasses.dataclass(frozen=True)
class Stored:
    """What upsert_nfe did: outcome None = stale, nothing written (a newer fetch or a cancellation is stored)."""

    outcome: NfeOutcome | None
    contato_id: int | None


def write_decision(stored_situacao: int | None, stored_fetch: datetime.datetime | None, situacao: int | None,
                   fetched_at: datetime.datetime | None) -> NfeOutcome | None:
    """The outcome of writing a detail over what is stored, or None when it must not be written (stale): never
    an older fetch over a newer one, never a non-cancelled invoice over a cancelled one (cancellation is final)."""
    if stored_situacao is None:
        return NfeOutcome.NEW
    if stored_situacao == SITUACAO_CANCELADA and situacao != SITUACAO_CANCELADA:
        return None
    if stored_fetch is not None and fetched_at is not None and fetched_at < stored_fetch:
        return None
    if situacao == SITUACAO_CANCELADA:
        return NfeOutcome.CANCELLED if stored_situacao != SITUACAO_CANCELADA else NfeOutcome.UPDATED
    return NfeOutcome.UPDATED


def upsert_nfe(cur: Any, nfe: dict[str, Any], timezone: str, run_id: str, raw: dict[str, Any] | None = None,
               fetched_at: datetime.datetime | None = None) -> Stored:
    """Write one invoice inside the caller's transaction (write_decision() says whether, and with what outcome).

    `raw` is the JSON exactly as Bling sent it, when `nfe` had gaps filled in from the listing; `fetched_at` when
    GET /nfe/{id} was sent (None: unknown, e.g. a benchmark; then only the cancellation rule applies).

    Five round trips: (1) a transaction-scoped advisory lock on the invoice id — unlike a row lock it also
    serializes two deliveries of an invoice not stored yet, so the second one's statements see the first one's
    lines (bigint key space; the migration runner locks in the separate two-integer space); (2) the stored
    situação and fetch time; (3) the header upsert with the removal of the old lines; (4) the item lines; (5) the
    parcelas, each as one multi-row INSERT."""
    header = header_row(nfe, timezone, run_id, fetched_at)
    nfe_id = header["id"]
    cur.execute("SELECT pg_advisory_xact_lock(%s)", (nfe_id,))
    # A statement of its own: a statement's snapshot is taken when it starts, so a read in the locking statement
    # would miss what the lock holder committed while this one waited.
    cur.execute("SELECT situacao, buscado_em FROM nfe WHERE id = %s", (nfe_id,))
    stored = cur.fetchone()
    previous, previous_fetch = stored if stored else (None, None)
    outcome = write_decision(previous, previous_fetch, header["situacao"], fetched_at)
    if outcome is None:
        return Stored(None, header["contato_id"])
    db.upsert(cur, "nfe", {**header, "raw": jsonutil.dumps(raw if raw is not None else nfe)}, casts={"raw": "jsonb"},
              prelude="WITH gone_items AS (DELETE FROM nfe_item WHERE nfe_id = %s), "
                      "gone_parcelas AS (DELETE FROM nfe_parcela WHERE nfe_id = %s) ",
              prelude_params=(nfe_id, nfe_id))
    items = item_rows(nfe_id, nfe)
    if items:
        _insert_rows(cur, "nfe_item", _ITEM_COLUMNS, items, {"impostos": "jsonb"})
    parcelas = parcela_rows(nfe_id, nfe)
    if parcelas:
        _insert_rows(cur, "nfe_parcela", _PARCELA_COLUMNS, parcelas, {})
    return Stored(outcome, header["contato_id"])
