"""Push delivery with production's concurrency, for measurements the emulator's own push would bound.

The Pub/Sub emulator (0.8.20) pushes with two loops per subscription, hard-coded (its
SubscriptionData.startPushLoops starts exactly 2 PushLoop), so a local function never serves more than two messages
at once. Production Pub/Sub pushes as fast as the endpoint answers, up to the function's max_instance_count, each
instance one request at a time (infra/functions.tf). With several accounts the two loops are the bottleneck: four
accounts' detail batches queue behind two slots while their budgets idle (docs/BENCHMARKS.md, "Several accounts at
once").

PushRelay does what a PushLoop does, with as many loops per subscription as the function has instances in
production: pull one message from a subscription without push config, POST the emulator's push envelope to the
endpoint the push subscription would have, ack on 2xx, and on anything else set the ack deadline to 1 s (the
emulator's retry delay) so the message comes back and its delivery attempts count towards the dead-letter policy.
"""
from __future__ import annotations

import base64
import contextlib
import datetime
import json
import threading
from collections.abc import Mapping
from typing import Any

import requests

# Terraform's defaults of var.function_max_instances (infra/variables.tf; tests/integration/stack checks they match).
PRODUCTION_MAX_INSTANCES: Mapping[str, int] = {"scheduler": 1, "lister": 4, "detail": 5, "enrich": 4}

_PULL_TIMEOUT_S = 5.0  # the emulator answers an empty pull after ~2 s, so stop() waits at most that long
_RETRY_DELAY_S = 1  # the emulator's PushLoop sets a failed message's ack deadline to 1,000 ms


def push_envelope(message: Any, subscription: str) -> dict[str, Any]:
    """The JSON body the emulator's HttpEndpointPusher posts for `message` (a PubsubMessage)."""
    published = message.publish_time
    if isinstance(published, datetime.datetime):
        stamp = published.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z")
    else:
        stamp = str(published)
    body = {"attributes": dict(message.attributes), "data": base64.b64encode(message.data).decode("ascii"),
            "messageId": message.message_id, "message_id": message.message_id,
            "publishTime": stamp, "publish_time": stamp}
    if message.ordering_key:  # as a real push does (the emulator's own push omits it)
        body["orderingKey"] = message.ordering_key
    return {"message": body, "subscription": subscription}


class PushRelay:
    """Loops that pull each subscription and push to its endpoint: `concurrency[function]` loops per route."""

    def __init__(self, subscriber: Any, routes: Mapping[str, tuple[str, str]], concurrency: Mapping[str, int],
                 timeout_s: Mapping[str, float]) -> None:
        """routes: {function: (subscription path, push endpoint)}; timeout_s: {function: ack deadline}."""
        self.subscriber = subscriber
        self.routes = dict(routes)
        self.concurrency = dict(concurrency)
        self.timeout_s = dict(timeout_s)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._in_flight: dict[str, int] = {}
        self.max_in_flight: dict[str, int] = {}
        self.pushed: dict[str, int] = {}
        self.failed: dict[str, int] = {}

    def start(self) -> PushRelay:
        for function, (subscription, endpoint) in self.routes.items():
            for k in range(self.concurrency.get(function, 2)):
                thread = threading.Thread(target=self._loop, args=(function, subscription, endpoint),
                                          name=f"push-{function}-{k}", daemon=True)
                thread.start()
                self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=_PULL_TIMEOUT_S + 60)
        self._threads.clear()

    def _loop(self, function: str, subscription: str, endpoint: str) -> None:
        session = requests.Session()
        try:
            while not self._stop.is_set():
                try:
                    response = self.subscriber.pull(request={"subscription": subscription, "max_messages": 1},
                                                    timeout=_PULL_TIMEOUT_S)
                except Exception:  # noqa: BLE001 - a deadline or a stopping emulator: pull again or stop
                    self._stop.wait(0.2)
                    continue
                for received in response.received_messages:
                    self._deliver(session, function, subscription, endpoint, received)
        finally:
            session.close()

    def _deliver(self, session: requests.Session, function: str, subscription: str, endpoint: str,
                 received: Any) -> None:
        body = json.dumps(push_envelope(received.message, subscription))
        self._count(function, +1)
        try:
            answer = session.post(endpoint, data=body, headers={"Content-Type": "application/json"},
                                  timeout=self.timeout_s.get(function, 600))
            ok = 200 <= answer.status_code < 300
        except requests.RequestException:
            ok = False
        finally:
            self._count(function, -1)
        with contextlib.suppress(Exception):  # an ack lost to a stopping emulator is a redelivery, as in production
            if ok:
                self.subscriber.acknowledge(request={"subscription": subscription, "ack_ids": [received.ack_id]})
            else:
                self.subscriber.modify_ack_deadline(request={"subscription": subscription,
                                                             "ack_ids": [received.ack_id],
                                                             "ack_deadline_seconds": _RETRY_DELAY_S})
        with self._lock:
            tally = self.pushed if ok else self.failed
            tally[function] = tally.get(function, 0) + 1

    def _count(self, function: str, delta: int) -> None:
        with self._lock:
            now = self._in_flight[function] = self._in_flight.get(function, 0) + delta
            self.max_in_flight[function] = max(self.max_in_flight.get(function, 0), now)
