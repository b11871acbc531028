"""Bling's error responses as exceptions.

Bling answers errors as {"error": {"type", "message", "description", "fields"?}}; the type to test is
body["error"]["type"] (an object, not a string: a bug other integrations fell into).
"""
from __future__ import annotations

from typing import Any, TypeVar

from shared.errors import (
    AuthorizationBroken,
    DailyLimitReached,
    EtlError,
    PermanentError,
    ReauthorizationRequired,
    RetryableError,
)


class BlingError(EtlError):
    def __init__(self, status: int, error_type: str = "", message: str = "", description: str = "",
                 fields: list[Any] | None = None, path: str = ""):
        self.status = status
        self.error_type = error_type
        self.error_message = message
        self.description = description
        self.fields = fields or []
        self.path = path
        super().__init__(f"Bling {status} {error_type or 'error'} on {path or '?'}: {description or message}".strip())

    def log_fields(self) -> dict[str, Any]:
        return {"http_status": self.status, "bling_error_type": self.error_type,
                "bling_error_message": self.error_message, "bling_error_description": self.description,
                "bling_error_fields": self.fields, "path": self.path}

    def as_kind(self, kind: type[_E], description: str | None = None) -> _E:
        """The same answer of Bling classified as `kind` (what the retry table or the token store decided it
        is), optionally with a description that says what to do about it."""
        return kind(self.status, self.error_type, self.error_message,
                    self.description if description is None else description, self.fields, self.path)


_E = TypeVar("_E", bound=BlingError)


class BlingRetryableError(BlingError, RetryableError):
    """5xx, timeouts, connection errors and 429s that outlived the in-process retries."""


class BlingPermanentError(BlingError, PermanentError):
    """400/403 and other answers that will not change by asking again."""


class BlingNotFound(BlingPermanentError):
    """404 RESOURCE_NOT_FOUND: the record does not exist (or belongs to another environment)."""


class BlingDailyLimit(BlingError, DailyLimitReached):
    """429 with period "day"."""


class BlingReauthorizationRequired(BlingError, ReauthorizationRequired):
    """The refresh token was refused (invalid_grant) and no other instance had replaced it."""


class BlingAuthorizationBroken(BlingError, AuthorizationBroken):
    """Bling refuses the client credentials (token endpoint 4xx other than invalid_grant), the company (401 other
    than invalid_token) or the scopes (403 insufficient_scope): fleet-wide flag, work parked (ADR 008)."""
