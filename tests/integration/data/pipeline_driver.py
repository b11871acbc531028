"""Drives the four Pub/Sub handlers in-process, the way push subscriptions would, over the real emulators.

Each handler is imported from functions/<name>/main.py and called with a push envelope; what it publishes is
pulled from the capture subscriptions and handed to the next handler until every topic is drained. Delivery
options model Pub/Sub's at-least-once behaviour: every message twice, or in shuffled order.
"""
from __future__ import annotations

import base64
import importlib.util
import itertools
import json
import random
from pathlib import Path
from typing import Any

from shared import topology
from tests.integration.process_deps import current_deps, forget_deps, use_deps

REPO = Path(__file__).resolve().parents[3]
_ids = itertools.count(1)
_loaded: dict[str, Any] = {}


def handler(function: str):
    if function not in _loaded:
        path = REPO / "functions" / function / "main.py"
        spec = importlib.util.spec_from_file_location(f"fn_{function}_main", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _loaded[function] = module
    module = _loaded[function]
    if hasattr(module, "deps"):
        module.deps = current_deps()
    return getattr(module, topology.ALL_FUNCTIONS[function])


def envelope(payload: Any, message_id: str | None = None, delivery_attempt: int | None = None) -> dict[str, Any]:
    """A push envelope; `delivery_attempt` is what Pub/Sub adds when the subscription has a dead-letter policy."""
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    event: dict[str, Any] = {"message": {"data": base64.b64encode(raw).decode(),
                                         "messageId": message_id or f"m-{next(_ids)}", "attributes": {}}}
    if delivery_attempt is not None:
        event["deliveryAttempt"] = delivery_attempt
    return event


class Pipeline:
    """`redeliver=True` models a push subscription with a dead-letter policy: a delivery that raises is delivered
    again (deliveryAttempt 1, 2, ...) up to the route's max_delivery_attempts, then the message is put in
    `dead_letters` instead of failing the test; otherwise a raising handler fails the test at once."""

    def __init__(self, capture, duplicate: bool = False, shuffle_seed: int | None = None, redeliver: bool = False):
        self.capture = capture
        self.duplicate = duplicate
        self.redeliver = redeliver
        self.rng = random.Random(shuffle_seed) if shuffle_seed is not None else None
        self.delivered: dict[str, int] = {r.topic: 0 for r in topology.ROUTES}
        self.dead_letters: dict[str, list[Any]] = {r.topic: [] for r in topology.ROUTES}

    def deliver(self, topic: str, payload: Any, message_id: str | None = None) -> None:
        route = next(r for r in topology.ROUTES if r.topic == topic)
        message_id = message_id or f"m-{next(_ids)}"
        for _ in range(2 if self.duplicate else 1):
            if not self.redeliver:
                handler(route.function)(envelope(payload, message_id))
                self.delivered[topic] += 1
                continue
            for attempt in range(1, route.max_delivery_attempts + 1):
                self.delivered[topic] += 1
                try:
                    handler(route.function)(envelope(payload, message_id, attempt))
                    break
                except Exception:  # noqa: BLE001 - what Pub/Sub sees as a failed push (HTTP 500)
                    if attempt == route.max_delivery_attempts:
                        self.dead_letters[topic].append(payload)

    def run(self, schedule_payload: Any, max_rounds: int = 50) -> None:
        self.deliver(topology.SCHEDULE.topic, schedule_payload)
        self.drain(max_rounds)

    def drain(self, max_rounds: int = 50) -> None:
        for _ in range(max_rounds):
            # What every downstream topic holds (one wait per round for all three: the handlers return only after
            # their publishes were accepted, so a round that finds nothing is the end). The wait is a margin for the
            # emulator's delivery lag, which was never seen: a message whose publish was accepted was in the next
            # pull 300 times out of 300 (it was 0.5 s, paid once per drain, ~45 drains in the suite).
            pending = self.capture.pull_topics([r.topic for r in topology.ROUTES[1:]], timeout_s=0.2)
            if not pending:
                return
            if self.rng:
                self.rng.shuffle(pending)
            for topic, message in pending:
                self.deliver(topic, message["data"], message_id=message.get("id"))
        raise AssertionError("the pipeline did not settle")


def rows(postgres, sql: str, params: tuple = ()) -> list[tuple]:
    """Query the test cluster on a connection of its own (not the pipeline's), so a test reads what is committed.
    Rows are tuples, so a test can compare them with literals."""
    conn = postgres.connect()
    try:
        cur = conn.cursor()
        cur.execute(sql, params)
        return [tuple(r) for r in cur.fetchall()]
    finally:
        conn.close()
