"""JSON text for jsonb columns that keeps Bling's numbers exact.

The Bling client parses numbers as Decimal; json.dumps cannot write a Decimal as a number, and float would round
it. This writes Decimals as their exact decimal text, so raw JSON stored in PostgreSQL equals what Bling sent.
"""
from __future__ import annotations

import decimal
import json
from typing import Any


def dumps(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k), ensure_ascii=False)}:{dumps(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(dumps(v) for v in value) + "]"
    if isinstance(value, decimal.Decimal):
        return str(value) if value.is_finite() else "null"
    return json.dumps(value, ensure_ascii=False, default=str)
