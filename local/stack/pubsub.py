"""Pub/Sub on the emulator as shared.topology declares it: topics, push subscriptions with dead letters, and the
publish/pull helpers tests and the demo use."""
from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from local.stack.emulators import PubSubEmulator

if TYPE_CHECKING:
    from shared.topology import Route


def create_topology(emulator: PubSubEmulator, endpoints: Mapping[str, str], project: str | None = None,
                    routes: Iterable[Route] | None = None, ack_deadline_s: int | None = None,
                    push: bool = True, message_ordering: bool = False) -> None:
    """Create what shared.topology declares: per route the topic, its dead-letter topic, the push subscription to
    push_endpoint() with its dead-letter policy, and the `-dead-letter-hold` pull subscription. endpoints maps
    function name -> base URL. The ack deadline defaults to the route's value.

    No retry policy, unlike production (infra/pubsub.tf): the emulator (0.8.20) loses messages under one. With
    min/max backoff set, a message whose push failed twice is neither redelivered nor dead-lettered (measured:
    14 of 60 messages lost at a 50 % push failure rate, 0 of 60 without the policy; docs/decisions/005).
    Without it the emulator retries a failed push after 1 s, and still counts attempts for the dead-letter
    policy.

    Message ordering on the routes that order by account (production's, ADR 014) only with message_ordering=True:
    the emulator (0.8.20) never dead-letters a message of an ordered subscription (measured: a failing message,
    keyed or not, pushed 5 times and then neither delivered nor in the dead-letter topic;
    tests/integration/stack/test_push_relay.py), so the stacks that test failures keep it off; the multi-account
    bench, which measures delivery, turns it on.

    push=False leaves the routes' subscriptions without push config, for a local.stack.push_relay.PushRelay to
    deliver (to push_endpoint(), as the push would)."""
    from google.api_core import exceptions

    from shared import topology

    project = project or emulator.project
    publisher, subscriber = emulator.publisher(), emulator.subscriber()
    for route in routes if routes is not None else topology.ROUTES:
        topic_path = publisher.topic_path(project, route.topic)
        dlq_path = publisher.topic_path(project, route.dead_letter_topic)
        for path in (topic_path, dlq_path):
            with contextlib.suppress(exceptions.AlreadyExists):
                publisher.create_topic(request={"name": path})
        with contextlib.suppress(exceptions.AlreadyExists):
            subscriber.create_subscription(request={
                "name": subscriber.subscription_path(project, route.dead_letter_subscription),
                "topic": dlq_path, "ack_deadline_seconds": 60})
        if route.function not in endpoints:
            continue
        subscription: dict[str, Any] = {
            "name": subscriber.subscription_path(project, route.subscription),
            "topic": topic_path,
            "ack_deadline_seconds": ack_deadline_s or route.ack_deadline_s,
            "dead_letter_policy": {"dead_letter_topic": dlq_path,
                                   "max_delivery_attempts": route.max_delivery_attempts},
            "enable_message_ordering": message_ordering and route.ordered_by_account,
        }
        if push:
            subscription["push_config"] = {"push_endpoint": push_endpoint(endpoints[route.function], project,
                                                                          route.topic)}
        with contextlib.suppress(exceptions.AlreadyExists):
            subscriber.create_subscription(request=subscription)


def push_endpoint(function_url: str, project: str, topic: str) -> str:
    """Where a route's messages are pushed: <function>/projects/<P>/topics/<topic>, so that functions-framework's
    conversion of a raw Pub/Sub push gives the CloudEvent the topic as its source, as in production."""
    return f"{function_url.rstrip('/')}/projects/{project}/topics/{topic}"


def publish_json(emulator: PubSubEmulator, topic: str, payload: Any, project: str | None = None,
                 **attributes: str) -> str:
    """Publish payload as compact JSON (dates and decimals as strings); the message id."""
    publisher = emulator.publisher()
    data = json.dumps(payload, separators=(",", ":"), default=str).encode()
    message_id: str = publisher.publish(publisher.topic_path(project or emulator.project, topic), data,
                                        **attributes).result(timeout=30)
    return message_id


def pull_all(emulator: PubSubEmulator, subscription: str, project: str | None = None, max_messages: int = 100,
             timeout_s: float = 5.0, ack: bool = True) -> list[dict[str, Any]]:
    """Pull (and ack) what the subscription holds: [{data (decoded JSON or bytes), attributes, id, delivery_attempt,
    ordering_key}]. On a subscription with message ordering a pull gets one message per key at a time.

    Waits up to timeout_s for the first message, then drains what is already there and returns."""
    subscriber = emulator.subscriber()
    path = subscriber.subscription_path(project or emulator.project, subscription)
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    while True:
        # return_immediately (deprecated for production, honoured by the emulator) keeps an empty pull at ~5 ms
        # instead of a blocking RPC, so a test that expects nothing does not wait a whole timeout per call.
        response = subscriber.pull(request={"subscription": path, "max_messages": max_messages,
                                            "return_immediately": True}, timeout=30)
        for received in response.received_messages:
            raw = received.message.data
            try:
                data: Any = json.loads(raw)
            except ValueError:
                data = raw
            out.append({"data": data, "attributes": dict(received.message.attributes),
                        "id": received.message.message_id, "delivery_attempt": received.delivery_attempt,
                        "ordering_key": received.message.ordering_key})
        if response.received_messages:
            if ack:
                subscriber.acknowledge(request={"subscription": path,
                                                "ack_ids": [r.ack_id for r in response.received_messages]})
            continue
        if out or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    return out
