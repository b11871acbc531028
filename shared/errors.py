"""One exception root, small leaves, no logic inside.

The leaves decide what a handler does with a Pub/Sub message (shared.handler):
- RetryableError: raise, so Pub/Sub delivers the message again later.
- PermanentError: log an ERROR and acknowledge; retrying would give the same answer.
"""
from __future__ import annotations


class EtlError(Exception):
    """Root of every error this project raises on purpose."""


class RetryableError(EtlError):
    """Transient: the same message may succeed later (network, 429, 5xx, database restart)."""


class PermanentError(EtlError):
    """The message or the record can never succeed as it is; drop it with a clear log line."""


class BadMessage(PermanentError):
    """A Pub/Sub message that is not what its topic carries (not JSON, unknown keys, bad dates)."""


class ConfigurationError(PermanentError):
    """A required setting is missing; a human has to fix the deployment."""


class ReauthorizationRequired(RetryableError):
    """Bling refused the stored refresh token; a human must open the auth function's URL.

    Retryable on purpose: the work is kept (redelivered, then dead-lettered for replay) until the user re-authorizes.
    """


class DailyLimitReached(RetryableError):
    """Bling's 120,000 requests/day quota is spent; the work waits for tomorrow."""
