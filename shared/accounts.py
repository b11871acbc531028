"""An account's id (the slug the operator chooses when connecting a Bling company) and the database names it maps
to. Pure: no I/O, so every layer (messages, Firestore keys, SQL schemas, roles) can validate with the same rule.

The slug is `[a-z0-9-]`, 3 to 40 characters, starts with a letter, ends with a letter or digit, no `--`. Its
schema is `bling_<slug with _ for ->` and its read-only role `bling_bi_<slug with _ for ->`: a slug has no
underscore and an unquoted SQL identifier no hyphen, so the mapping is one-to-one, and every name it produces is
a plain lowercase identifier (at most 49 characters, under PostgreSQL's 63).
"""
from __future__ import annotations

import re

MIN_LENGTH, MAX_LENGTH = 3, 40
_SLUG = re.compile(r"^[a-z](?:[a-z0-9]|-(?=[a-z0-9])){1,38}[a-z0-9]$")
SCHEMA_PREFIX = "bling_"
READER_ROLE_PREFIX = "bling_bi_"


def parse_account_id(value: object) -> str:
    """The account id itself when `value` is a valid slug; ValueError saying what to change otherwise."""
    if not isinstance(value, str):
        raise ValueError(f"an account id is a text slug, not {type(value).__name__}")
    shown = value if len(value) <= 60 else value[:60] + "..."
    if not MIN_LENGTH <= len(value) <= MAX_LENGTH:
        raise ValueError(f"account id {shown!r} has {len(value)} characters: use {MIN_LENGTH} to {MAX_LENGTH}")
    if _SLUG.fullmatch(value) is None:  # fullmatch: "$" alone would accept a trailing newline
        raise ValueError(f"account id {shown!r} is not a slug: use lowercase letters a-z, digits and single hyphens, "
                         "starting with a letter and ending with a letter or digit (e.g. lojas-stilli)")
    return value


def schema_for(account: str) -> str:
    """The PostgreSQL schema holding this account's tables."""
    return SCHEMA_PREFIX + parse_account_id(account).replace("-", "_")


def reader_role_for(account: str) -> str:
    """The read-only PostgreSQL role of this account's analysts."""
    return READER_ROLE_PREFIX + parse_account_id(account).replace("-", "_")


def account_for_schema(schema: str) -> str:
    """The account whose schema this is (the inverse of schema_for); ValueError for any other name."""
    if not schema.startswith(SCHEMA_PREFIX) or "-" in schema:
        raise ValueError(f"{schema!r} is not an account schema (bling_<slug>)")
    account = schema[len(SCHEMA_PREFIX):].replace("_", "-")
    parse_account_id(account)
    return account
