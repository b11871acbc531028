"""Turning Bling's JSON values into database values, tolerating API garbage without inventing data.

A value of the wrong type becomes NULL (the raw JSON column still has it); nothing here raises on bad input.
"""
from __future__ import annotations

import datetime
import decimal
from typing import Any
from zoneinfo import ZoneInfo

_BLING_DATETIME = "%Y-%m-%d %H:%M:%S"


def nested(obj: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    if isinstance(value, decimal.Decimal) and value == value.to_integral_value():
        return int(value)
    return None


def as_id(value: Any) -> int | None:
    """Bling uses 0 for "no related record" (no vendedor, no loja); that is not an id."""
    number = as_int(value)
    return number if number and number > 0 else None


def as_decimal(value: Any) -> decimal.Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, decimal.Decimal)):
        return decimal.Decimal(value)
    if isinstance(value, str):
        try:
            number = decimal.Decimal(value.strip())
        except decimal.InvalidOperation:
            return None
        return number if number.is_finite() else None
    return None


def as_text(value: Any) -> str | None:
    """Identifiers that look like numbers (numero, chaveAcesso, CPF/CNPJ, CEP) stay text, exactly as sent.

    Never cut: a text column holds up to 1 GB, far beyond any answer Bling sends (nfe.xml once lost everything
    past 1,000,000 characters here while raw kept it)."""
    if value is None or isinstance(value, (dict, list)):
        return None
    text = value if isinstance(value, str) else str(value)
    text = text.replace("\x00", "")  # PostgreSQL text cannot hold NUL
    return text if text != "" else None


def as_bool(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def as_date(value: Any) -> datetime.date | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.date.fromisoformat(value.strip()[:10])
    except ValueError:
        return None  # Bling writes "0000-00-00" for an empty date


def as_local_datetime(value: Any, timezone: str) -> datetime.datetime | None:
    """Bling's naive 'YYYY-MM-DD HH:MM:SS' is São Paulo wall time; stored as timestamptz (UTC inside)."""
    if not isinstance(value, str):
        return None
    try:
        naive = datetime.datetime.strptime(value.strip(), _BLING_DATETIME)
    except ValueError:
        try:
            naive = datetime.datetime.combine(datetime.date.fromisoformat(value.strip()), datetime.time())
        except ValueError:
            return None
    return naive.replace(tzinfo=ZoneInfo(timezone))


def as_list(value: Any) -> list[Any]:
    """Bling sends null, or omits the key, where a list is empty."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []
