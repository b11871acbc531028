"""Payment forms (formas de pagamento) referenced by parcelas, fetched once each and cached.

Parcelas carry only `formaPagamento.id`; the type (PIX, boleto, cartão…) needs GET /formas-pagamentos/{id}. The
table is the cache shared by all instances (one indexed SELECT per invoice; no per-process copy that could
outlive a restored or emptied table). A form Bling answers 404 (or an odd 200 without a form) for is stored with
encontrada=false, so the parcela keeps its foreign key; like a contact not found, it is asked again once that
answer is older than ENRICH_MAX_AGE_DAYS (a form created late, or a passing Bling fault, must not stay unknown
forever), and only then.
"""
from __future__ import annotations

import datetime
from collections.abc import Iterable
from typing import Any

from shared import db, jsonutil, log
from shared.bling.api import BlingApi
from shared.bling.errors import BlingNotFound
from shared.bling_values import as_bool, as_int, as_text
from shared.db import SchemaDb

# Bling API v3 enum FormasPagamentosDadosBaseDTO.tipoPagamento.
TIPO_PAGAMENTO = {
    1: "Dinheiro", 2: "Cheque", 3: "Cartão de Crédito", 4: "Cartão de Débito", 5: "Cartão da Loja",
    10: "Vale Alimentação", 11: "Vale Refeição", 12: "Vale Presente", 13: "Vale Combustível",
    14: "Duplicata Mercantil", 15: "Boleto Bancário", 16: "Depósito Bancário",
    17: "Pagamento Instantâneo (PIX) - Dinâmico",
    18: "Transferência bancária, Carteira Digital", 19: "Programa de fidelidade, Cashback, Crédito Virtual",
    20: "Pagamento Instantâneo (PIX) – Estático", 21: "Crédito em Loja",
    22: "Pagamento Eletrônico não Informado - falha de hardware do sistema emissor", 90: "Sem pagamento",
    99: "Outros",
}

def ensure_known(bling: BlingApi, database: SchemaDb, form_ids: Iterable[int], max_age_days: int) -> int:
    """Make sure every id has a forma_pagamento row in the account's `database`; returns the number of Bling calls
    made."""
    wanted = set(form_ids)
    if not wanted:
        return 0
    recheck_before = (datetime.datetime.now(tz=datetime.UTC)
                      - datetime.timedelta(days=max_age_days))
    stored = {row[0] for row in database.fetch_all(
        "SELECT id FROM forma_pagamento WHERE id = ANY(%s) AND (encontrada OR atualizado_em >= %s)",
        (list(wanted), recheck_before))}
    calls = 0
    for form_id in sorted(wanted - stored):
        calls += 1
        try:
            form = bling.get(f"/formas-pagamentos/{form_id}").get("data")
        except BlingNotFound:
            log.warning("payment form not found in Bling; stored as not found", forma_pagamento_id=form_id)
            form = None
        _store(database, form_id, form if isinstance(form, dict) else None)
    return calls


def _store(database: SchemaDb, form_id: int, form: dict[str, Any] | None) -> None:
    form = form or {}
    tipo = as_int(form.get("tipoPagamento"))
    row = {"id": form_id, "descricao": as_text(form.get("descricao")), "tipo_pagamento": tipo,
           "tipo_pagamento_descricao": TIPO_PAGAMENTO.get(tipo) if tipo is not None else None,
           "situacao": as_int(form.get("situacao")), "fixa": as_bool(form.get("fixa")),
           "padrao": as_int(form.get("padrao")), "finalidade": as_int(form.get("finalidade")), "encontrada": bool(form),
           "raw": jsonutil.dumps(form) if form else None}
    with database.transaction() as cur:
        db.upsert(cur, "forma_pagamento", row, casts={"raw": "jsonb"})
