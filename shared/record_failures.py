"""Per-record retries: one record whose Bling call keeps failing must not starve the others of its message.

docs/decisions/009-per-record-retries.md has the design; in short:
- Each record of a message (an invoice of a detail batch, a contact or SKU of an enrich request) is tried on its
  own. A record whose OWN Bling call failed transiently (5xx, timeout, connection reset, truncated JSON, after the
  client's in-process retries) is set aside and the others go on. Everything else still fails the whole message as
  before: the database, 429 (the account's budget, shared by every record), the daily limit, a broken
  authorization. Those concern the system, not the record, and splitting them per record would multiply messages
  without helping.
- After a few such failures in a row the rest of the message is not tried in this delivery (Bling may be down for
  everyone: no point spending a minute of backoffs per record).
- Then, for a message of several records: if Bling answered any record in this delivery, the failed records are
  republished one per message and the untried ones together, and the message is acknowledged. If Bling answered
  none, that looks like "everything is failing": the message is redelivered whole, and only on its last delivery
  attempt split the same way, so it never reaches the dead-letter topic for one bad record.
- A message of one record that still fails is redelivered (Pub/Sub's backoff); on its last delivery attempt the
  record is given up: recorded failed with its error (the audit, for invoices) in one ERROR line, and acknowledged.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

from shared import log, message_failures
from shared.bling.errors import BlingRetryableError
from shared.db import SchemaDb
from shared.errors import DailyLimitReached, ReauthorizationRequired
from shared.messages import PubSubMessage
from shared.topology import Route

# Transient failures in a row, no record answered in between, after which a delivery stops calling Bling.
MAX_FAILURES_IN_A_ROW = 3

T = TypeVar("T")


def is_record_transient(exc: BaseException) -> bool:
    """True when this record's own Bling call failed in a way that may pass: 5xx, no answer (status 0: timeout,
    reset), or a 2xx whose body was not complete JSON. Not 429 (the rate budget is the account's), not 401, not the
    daily limit, not the authorization, never the database."""
    if not isinstance(exc, BlingRetryableError) or isinstance(exc, (DailyLimitReached, ReauthorizationRequired)):
        return False
    return exc.status == 0 or exc.status >= 500 or 200 <= exc.status < 300


def last_attempt(message: PubSubMessage, route: Route, database: SchemaDb) -> Callable[[], bool]:
    """Whether this delivery, about to fail, is the message's last: asked only then (at most once per delivery).

    Pub/Sub sends deliveryAttempt whenever the subscription has a dead-letter policy (ours all do). Google's emulator
    does not, so without it this delivery's failure is counted in PostgreSQL (etl_message_failures): the N-th delivery
    failing this way is the last of N allowed (counted in the account's `database`). (Deliveries that failed otherwise,
    e.g. on the database, are not counted, so locally such a message may still reach the dead-letter topic first.)"""
    def decide() -> bool:
        if message.delivery_attempt is not None:
            return message.delivery_attempt >= route.max_delivery_attempts
        if not message.message_id:
            return False
        return message_failures.count_failure(database, route.topic, message.message_id) >= route.max_delivery_attempts

    return decide


@dataclasses.dataclass
class Attempts:
    """The records of one delivery: which were answered, which failed transiently (with their error), and which
    were not tried because Bling kept failing."""

    failed: dict[Any, BlingRetryableError] = dataclasses.field(default_factory=dict)
    untried: list[Any] = dataclasses.field(default_factory=list)
    answered: int = 0
    _in_a_row: int = 0

    @property
    def stopped(self) -> bool:
        return self._in_a_row >= MAX_FAILURES_IN_A_ROW

    def settled(self, key: Any) -> bool:
        return key not in self.failed and key not in self.untried

    def run(self, work: Callable[[], T], *keys: Any) -> T | None:
        """work() for the records `keys` (one, or a group that one call serves); None when it failed transiently
        or was not tried. Any other exception propagates: it fails the whole message."""
        if self.stopped:
            self.untried.extend(keys)
            return None
        try:
            value = work()
        except BlingRetryableError as exc:
            if not is_record_transient(exc):
                raise
            log.warning(f"set aside, the others go on: {exc}", event="record_retry", records=[str(k) for k in keys],
                        **exc.log_fields())
            self.failed.update((k, exc) for k in keys)
            self._in_a_row += 1
            return None
        self.answered += 1
        self._in_a_row = 0
        return value


def settle(attempts: Attempts, records: int, is_last_attempt: Callable[[], bool],
           republish: Callable[[list[list[Any]]], None], give_up: Callable[[Any, BlingRetryableError], None]) -> None:
    """What the delivery does with the records it could not finish (see the module docstring). `records` is how
    many the message carried; is_last_attempt() is asked only when the delivery would fail (last_attempt());
    republish(groups) publishes one message per group of keys; give_up(key, error) records a failure for good.
    Raises the first failure when the message must be redelivered as it is."""
    if not attempts.failed and not attempts.untried:
        return
    if records == 1:
        (key, error), = attempts.failed.items()
        if not is_last_attempt():
            raise error
        give_up(key, error)
        return
    last = False if attempts.answered else is_last_attempt()
    if not attempts.answered and not last:
        raise next(iter(attempts.failed.values()))
    groups = [[key] for key in attempts.failed]
    if attempts.untried:
        # Never failed themselves: one message for all of them, unless nothing answered at all (last attempt),
        # when each gets its own attempts.
        groups += [attempts.untried] if attempts.answered else [[key] for key in attempts.untried]
    republish(groups)
    log.info(f"{len(attempts.failed)} record(s) retried in messages of their own, {len(attempts.untried)} "
             "untried republished", event="records_republished", failed=len(attempts.failed),
             untried=len(attempts.untried), messages=len(groups))
