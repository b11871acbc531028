"""The domain's values, once: the enums the database CHECKs mirror, Bling's situação codes, the id ranges our
columns hold, and the window key (how a window is named in messages, the audit and checkpoints).

Enums are StrEnum, so a member is the very string the database stores and compares equal to it.
"""
from __future__ import annotations

import datetime
import enum
from typing import Any, TypeGuard

# Bling's situação of an NF-e that was cancelled; listings leave these out unless asked (shared.listing).
SITUACAO_CANCELADA = 2

# The database columns these land in: ids are bigint, situação is smallint. A larger number is not a record
# Bling can have, and PostgreSQL would refuse it on every delivery (a poison message).
MAX_ID = 2 ** 63 - 1
MAX_SITUACAO = 2 ** 15 - 1


class RunKind(enum.StrEnum):
    """etl_run.tipo (CHECK in migrations/002)."""

    DAILY = "daily"
    MONTH = "month"
    RANGE = "range"


class WindowStatus(enum.StrEnum):
    """etl_window.status (CHECK in migrations/002); listed and failed are final."""

    PENDING = "pending"
    LISTING = "listing"
    LISTED = "listed"
    FAILED = "failed"


class NfeOutcome(enum.StrEnum):
    """etl_nfe_audit.resultado (CHECK in migrations/002): what one delivery did with one invoice."""

    LISTED = "listed"
    NEW = "new"
    UPDATED = "updated"
    CANCELLED = "cancelled"
    UNCHANGED = "unchanged"
    SKIPPED = "skipped"
    FAILED = "failed"


class EntityKind(enum.StrEnum):
    """What the enrich step loads: the claims' kinds, and the first half of a record's key in record_failures."""

    CONTACT = "contato"
    SKU = "sku"


def is_positive_int(value: Any, maximum: int = MAX_ID) -> TypeGuard[int]:
    """A JSON integer in 1..maximum; bool is an int in Python, but a JSON true is not an id."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= maximum


def window_key(start: datetime.date, end: datetime.date) -> str:
    return f"{start.isoformat()}..{end.isoformat()}"


def parse_window_key(key: str) -> tuple[datetime.date, datetime.date]:
    """The (start, end) of a window_key(); ValueError when key is not one (end before start included)."""
    start, sep, end = key.partition("..")
    if not sep:
        raise ValueError(f"window must be YYYY-MM-DD..YYYY-MM-DD, got {key!r}")
    first, last = datetime.date.fromisoformat(start), datetime.date.fromisoformat(end)
    if last < first:
        raise ValueError(f"window {key!r} ends before it starts")
    return first, last
