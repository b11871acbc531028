"""One exception root, small leaves, no logic inside.

The leaves decide what a handler does with a Pub/Sub message (shared.handler):
- RetryableError: raise, so Pub/Sub delivers the message again later.
- PermanentError: log an ERROR and acknowledge; retrying would give the same answer.
- OperatorActionRequired: park the message until a human fixes the authorization or the configuration; it is
  deliberately neither retryable (retries would only burn delivery attempts) nor permanent (the work is not lost,
  and per-record `except PermanentError` blocks must not swallow it as one bad record).
"""
from __future__ import annotations

from typing import Any


class EtlError(Exception):
    """Root of every error this project raises on purpose."""

    def log_fields(self) -> dict[str, Any]:
        """Structured fields for the log line that reports this error (none by default; shared.bling.errors)."""
        return {}


class RetryableError(EtlError):
    """Transient: the same message may succeed later (network, 429, 5xx, database restart)."""


class PermanentError(EtlError):
    """The message or the record can never succeed as it is; drop it with a clear log line."""


class BadMessage(PermanentError):
    """A Pub/Sub message that is not what its topic carries (not JSON, unknown keys, bad dates)."""


class OperatorActionRequired(EtlError):
    """The authorization or the configuration is broken: nothing a retry can fix, everything a human fix will.

    The handler parks the message (shared.parking) with the reason; it is released when the fix is in.
    """


class ConfigurationError(OperatorActionRequired):
    """A required setting is missing or unusable; a human has to fix the deployment."""


class AuthorizationBroken(OperatorActionRequired):
    """Bling refuses our client credentials, the company or the scopes (invalid_client, "Empresa inativa",
    insufficient_scope): a fleet-wide flag is set and nobody calls Bling until it is cleared (ADR 008)."""


class ReauthorizationRequired(RetryableError):
    """Bling refused the stored refresh token; a human must open the auth function's URL.

    A RetryableError for the code that calls Bling (a per-record `except PermanentError` must not drop the record);
    the handler parks the message (shared.parking) until the user re-authorizes, and the new authorization
    releases it: it is neither redelivered in a loop nor dead-lettered.
    """


class DailyLimitReached(RetryableError):
    """Bling's 120,000 requests/day quota is spent; the work waits for tomorrow."""
