"""The one place where an exception becomes an ack or a nack.

Raise means "Pub/Sub, deliver this again" (functions-framework answers 500 to the push); return means "done or
dropped". PermanentError (bad input, a record Bling does not have) is logged as ERROR and acknowledged, so it is
never retried forever. RetryableError is logged as WARNING and re-raised. Anything unexpected is logged with its
stack and re-raised: the subscription's dead-letter policy stops it after the configured attempts.
DailyLimitReached, ReauthorizationRequired and OperatorActionRequired (a broken authorization or configuration:
ConfigurationError, AuthorizationBroken) park the message instead (shared.parking), with the reason: retrying
cannot help before tomorrow or before a human fixes something, and the work must not be dropped nor end in the
dead-letter topic meanwhile. A configuration error is logged as ERROR once per process and text (the fleet-wide
authorization flag logs its own single ERROR where it is set); every parked message is a WARNING.
"""
from __future__ import annotations

import enum
import functools
import threading
import time
from collections.abc import Callable
from typing import Any

from shared import log, parking, topology
from shared.account_registry import NoAccountConnected
from shared.errors import (
    ConfigurationError,
    DailyLimitReached,
    EtlError,
    OperatorActionRequired,
    PermanentError,
    ReauthorizationRequired,
    RetryableError,
)
from shared.messages import PubSubMessage

MessageHandler = Callable[[PubSubMessage], None]


def pubsub_handler(function_name: str, parked: Callable[[], Any]) -> Callable[[MessageHandler], Callable[[Any], None]]:
    """`parked()`: the collection topology.PARKED of the function's composition root, asked for when a message is
    parked (a callable, so the root can be replaced after the module is loaded, as the test driver does)."""
    topic = next(r.topic for r in topology.ROUTES if r.function == function_name)

    def decorate(handle: MessageHandler) -> Callable[[Any], None]:
        @functools.wraps(handle)
        def on_cloud_event(cloud_event: Any) -> None:
            started = time.monotonic()
            with log.bind(function=function_name):
                try:
                    message = PubSubMessage.from_cloud_event(cloud_event)
                except PermanentError as exc:
                    log.error(f"dropped an undecodable Pub/Sub envelope: {exc}")
                    return
                with log.bind(message_id=message.message_id, delivery_attempt=message.delivery_attempt):
                    try:
                        handle(message)
                    except Exception as exc:
                        decision = decide(exc)
                        if decision is Decision.DROP:
                            log.error(f"message dropped, it cannot succeed: {exc}", input=message.text_for_log(),
                                      error_type=type(exc).__name__, **_fields(exc))
                            return
                        if decision is Decision.PARK:
                            _park(parked(), topic, message, exc)
                            return
                        if isinstance(exc, RetryableError):
                            log.warning(f"will be redelivered: {exc}", error_type=type(exc).__name__,
                                        **_fields(exc))
                        else:
                            log.exception(f"unexpected failure, will be redelivered: {exc}", exc,
                                          input=message.text_for_log())
                        raise
                    log.debug("message handled", duration_ms=round((time.monotonic() - started) * 1000))

        return on_cloud_event

    return decorate


class Decision(enum.Enum):
    """What becomes of a message whose handling raised: acknowledged without its work (DROP, one ERROR), parked
    until a human or tomorrow (PARK, acknowledged), or redelivered by Pub/Sub (NACK: the exception propagates)."""

    DROP = "drop"
    PARK = "park"
    NACK = "nack"


def decide(exc: BaseException) -> Decision:
    """The one ack/nack/park decision, by the error model's leaves (shared.errors): the order matters, since
    ReauthorizationRequired and DailyLimitReached are also RetryableError."""
    if isinstance(exc, PermanentError):
        return Decision.DROP
    if isinstance(exc, (DailyLimitReached, ReauthorizationRequired, OperatorActionRequired)):
        return Decision.PARK
    return Decision.NACK


def _fields(exc: BaseException) -> dict[str, Any]:
    return exc.log_fields() if isinstance(exc, EtlError) else {}


_UNTIL = ((NoAccountConnected, "an account is connected"), (DailyLimitReached, "tomorrow"),
          (ReauthorizationRequired, "re-authorization"),
          (OperatorActionRequired, "the authorization or configuration is fixed"))
_configuration_errors_logged: set[str] = set()
_logged_lock = threading.Lock()


def _park(collection: Any, topic: str, message: PubSubMessage, exc: BaseException) -> None:
    parking.park(collection, topic, message, type(exc).__name__, detail=str(exc), account=message.named_account())
    if isinstance(exc, ConfigurationError):
        with _logged_lock:
            first = str(exc) not in _configuration_errors_logged
            _configuration_errors_logged.add(str(exc))
        if first:
            log.error(f"configuration error, work parked until it is fixed: {exc}", event="configuration_error",
                      error_type=type(exc).__name__)
    until = next(text for cls, text in _UNTIL if isinstance(exc, cls))
    log.warning(f"message parked until {until}: {exc}", event="message_parked", error_type=type(exc).__name__,
                **_fields(exc))
