"""HTTP plumbing shared by the API client and the token endpoint: the pooled session (one per process, held by
shared.deps.Deps), Bling's error bodies."""
from __future__ import annotations

import decimal
import json
from typing import Any

from shared.bling.errors import BlingError


def new_session() -> Any:
    """A requests.Session with a connection pool (reused across requests: connection reuse)."""
    import requests
    from requests.adapters import HTTPAdapter

    s = requests.Session()
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=32, max_retries=0)
    s.mount("https://", adapter)
    s.mount("http://", adapter)
    return s


def parse_json(body: bytes) -> Any:
    """The JSON value of body with exact decimals, or None when it is not (complete) JSON."""
    try:
        return json.loads(body.decode("utf-8"), parse_float=decimal.Decimal)
    except (UnicodeDecodeError, ValueError):
        return None


def error_from_response(status: int, parsed: Any, path: str) -> BlingError:
    """A BlingError carrying Bling's {"error": {type, message, description, fields}} (or what there is of it)."""
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(error, dict):
        return BlingError(status, str(error.get("type") or ""), str(error.get("message") or ""),
                          str(error.get("description") or ""), error.get("fields") or [], path)
    if isinstance(error, str):  # RFC 6749 shape {"error": "invalid_grant", "error_description": ...}
        return BlingError(status, error, error, str(parsed.get("error_description") or ""), [], path)
    return BlingError(status, "", "", "" if parsed is not None else "non-JSON body", [], path)

