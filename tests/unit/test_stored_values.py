"""Values on their way into PostgreSQL: what text and jsonb columns can hold (issue 10.5, 10.13)."""
from __future__ import annotations

import decimal
import json

from shared import jsonutil, nfe_store


def test_jsonb_text_never_carries_a_nul_character_in_values_or_keys():
    # jsonb rejects \u0000 (SQLSTATE 22P05) wherever it is: a value, a key, deep inside a list.
    value = {"no\x00me": "Ana\x00 Maria", "itens": [{"descricao": "a\x00b", "valor": decimal.Decimal("1.10")}],
             "x": ["\x00"]}
    text = jsonutil.dumps(value)
    assert "\\u0000" not in text and "\x00" not in text
    assert json.loads(text) == {"nome": "Ana Maria", "itens": [{"descricao": "ab", "valor": 1.10}], "x": [""]}
    assert '"valor":1.10' in text  # exact decimals still


def test_the_xml_field_is_stored_whole_however_long():
    xml = "<nfeProc>" + "x" * 1_200_000 + "</nfeProc>"
    row = nfe_store.header_row({"id": 1, "tipo": 1, "situacao": 5, "xml": xml}, "America/Sao_Paulo", "r")
    assert row["xml"] == xml
