"""Reading the functions' JSON log lines and looking for secrets in logs: shared by the end-to-end and chaos tests."""
from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from local.stack import LocalStack


def json_lines(function: str, text: str) -> list[dict[str, Any]]:
    """The JSON objects among a function's log lines, each with `_function` added (other lines skipped)."""
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            entry["_function"] = function
            out.append(entry)
    return out


def leaked_secrets(stack: LocalStack, text: str, tokens: Iterable[str]) -> list[str]:
    """Which kinds of secret appear in `text`: the client secret, the DB password, the auth admin key, a token."""
    secrets = {"client secret": [stack.sandbox.client_secret], "DB password": [stack.postgres.password],
               "auth admin key": [stack.auth_admin_key], "token": sorted(tokens)}
    return [name for name, values in secrets.items() for value in values if value and value in text]
