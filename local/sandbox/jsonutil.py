"""JSON with exact decimals, the way Bling writes numbers.

Bling answers numbers such as `19.9`, `1234.56` or `1.5` (never quoted). The dataset keeps every amount as a
`Decimal`, and this module writes it as bare decimal text, so a client that parses with
`json.loads(body, parse_float=Decimal)` gets back exactly the truth value (and a careless client that parses
floats gets the usual binary-float approximation, as it would against Bling).

The C JSON encoder cannot emit a custom number, so Decimals are first written as a marked string and the marks are
stripped afterwards; that keeps dumping a 10 MB truth document fast.
"""
from __future__ import annotations

import decimal
import json
import re
from typing import Any

_MARK = "\x1e#dec#"
# json.dumps escapes \x1e as \u001e; the pattern matches the escaped form.
_MARKED = re.compile(r'"\\u001e#dec#(-?[0-9]+(?:\.[0-9]+)?)"')


def dec(value: Any) -> decimal.Decimal:
    """A Decimal without trailing zeros or exponent, so that it round-trips through its JSON text unchanged."""
    d = value if isinstance(value, decimal.Decimal) else decimal.Decimal(str(value))
    return decimal.Decimal(decimal_text(d))


def decimal_text(d: decimal.Decimal) -> str:
    text = format(d, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    if text in ("-0", ""):
        text = "0"
    return text


def _default(obj: Any) -> Any:
    if isinstance(obj, decimal.Decimal):
        return _MARK + decimal_text(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def dumps(obj: Any, *, indent: int | None = None) -> bytes:
    """UTF-8 JSON (non-ASCII kept as is, as Bling does) with Decimals written as bare numbers."""
    separators = None if indent else (",", ":")
    text = json.dumps(obj, ensure_ascii=False, default=_default, indent=indent, separators=separators)
    return _MARKED.sub(r"\1", text).encode("utf-8")


def loads(data: bytes | str) -> Any:
    """The inverse of dumps for tests and admin calls: floats become Decimals."""
    return json.loads(data, parse_float=decimal.Decimal)
