"""Structured logs: one JSON object per line on stdout, in Cloud Logging's format.

Cloud Logging lifts `severity` and `message` and keeps the other keys in `jsonPayload`, so
`gcloud logging read 'jsonPayload.run_id="..."'` finds every line of a run. The keys bound with `bind()` (function,
run_id, window, nfe_id, ...) are added to every line written inside that context. Secrets are redacted twice:
by key name, and by value for every string registered with `register_secret()`.
"""
from __future__ import annotations

import contextlib
import contextvars
import datetime
import json
import sys
import threading
import traceback
import types
from collections.abc import Iterator, Mapping
from typing import Any

_SEVERITY = "severity"
_MESSAGE = "message"
_TIME = "time"
_LABELS = "logging.googleapis.com/labels"
# Low-cardinality keys that also go into labels, so log-based metrics and alerts can group by them.
_LABEL_KEYS = ("function",)
_REDACTED = "[redacted]"
_SECRET_KEY_PARTS = ("token", "secret", "password", "authorization", "code_verifier")
# Keys that contain a secret-looking word but only ever hold harmless values.
_NOT_SECRET_KEYS = frozenset({"token_expires_at", "token_version", "reauth_required", "token_stored"})

# Read-only default: bind() always sets a new dict, nothing ever mutates the one a context holds.
_context: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar("log_context",
                                                                         default=types.MappingProxyType({}))
_secrets: set[str] = set()
_write_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Never print this value, whatever key it appears under (tokens, client secret, DB password)."""
    if value and len(value) >= 6:
        _secrets.add(value)


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        for secret in _secrets:
            if secret in value:
                value = value.replace(secret, _REDACTED)
        return value
    if isinstance(value, dict):
        return {k: (_REDACTED if _is_secret_key(k) else _scrub(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub(v) for v in value]
    return value


def _is_secret_key(key: str) -> bool:
    lowered = key.lower()
    return lowered not in _NOT_SECRET_KEYS and any(part in lowered for part in _SECRET_KEY_PARTS)


@contextlib.contextmanager
def bind(**fields: Any) -> Iterator[None]:
    """Add fields to every log line written inside this block (and in threads it starts with copy_context)."""
    token = _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


def context() -> dict[str, Any]:
    return dict(_context.get())


def _emit(severity: str, message: str, fields: dict[str, Any]) -> None:
    entry: dict[str, Any] = {_SEVERITY: severity, _MESSAGE: message}
    entry[_TIME] = datetime.datetime.now(tz=datetime.UTC).isoformat()
    entry.update(_context.get())
    entry.update(fields)
    labels = {k: str(entry[k]) for k in _LABEL_KEYS if k in entry}
    if labels:
        entry[_LABELS] = labels
    line = json.dumps(_scrub(entry), default=str, ensure_ascii=False)
    with _write_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def debug(message: str, **fields: Any) -> None:
    _emit("DEBUG", message, fields)


def info(message: str, **fields: Any) -> None:
    _emit("INFO", message, fields)


def warning(message: str, **fields: Any) -> None:
    _emit("WARNING", message, fields)


def error(message: str, **fields: Any) -> None:
    _emit("ERROR", message, fields)


def exception(message: str, exc: BaseException, **fields: Any) -> None:
    """ERROR with the exception's type, text and stack, so Error Reporting groups it."""
    stack = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    _emit("ERROR", message, {"error_type": type(exc).__name__, "error": str(exc), "stack_trace": stack, **fields})
