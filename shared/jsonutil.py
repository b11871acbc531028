"""JSON text for jsonb columns that keeps Bling's numbers exact and that PostgreSQL accepts.

The Bling client parses numbers as Decimal; json.dumps cannot write a Decimal as a number, and float would round
it. This writes Decimals as their exact decimal text, so raw JSON stored in PostgreSQL equals what Bling sent —
except for NUL characters: jsonb rejects `\\u0000` anywhere (SQLSTATE 22P05), in a value or a key, so they are
removed, as they are from text columns (bling_values.as_text). Otherwise one NUL in one field would make the
record unstorable on every delivery.
"""
from __future__ import annotations

import decimal
import json
from typing import Any

NUL = "\x00"


def _text(value: str) -> str:
    return json.dumps(value.replace(NUL, ""), ensure_ascii=False)


def dumps(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ",".join(f"{_text(str(k))}:{dumps(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(dumps(v) for v in value) + "]"
    if isinstance(value, decimal.Decimal):
        return str(value) if value.is_finite() else "null"
    if isinstance(value, str):
        return _text(value)
    return json.dumps(value, ensure_ascii=False, default=lambda v: str(v).replace(NUL, ""))
