"""local.stack.push_relay against the real Pub/Sub emulator: why it exists (the emulator's push serves two messages
at once per subscription), that it serves as many as production's instances, posts what the emulator's push posts,
and keeps the push semantics the pipeline relies on (a failed push comes back, and after max_delivery_attempts the
message is in the dead-letter hold; the others are delivered once)."""
from __future__ import annotations

import base64
import dataclasses
import json
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from local.stack import REPO_ROOT, create_topology, publish_json, pull_all
from local.stack.pubsub import push_endpoint
from local.stack.push_relay import PRODUCTION_MAX_INSTANCES, PushRelay
from shared import pubsub
from shared.topology import Route

pytestmark = pytest.mark.slow

ROUTE = Route(topic="relay-probe", function="detail", entry_point="unused", max_delivery_attempts=5,
              ack_deadline_s=30)
HOLD_S = 0.4


class Endpoint:
    """An HTTP endpoint that holds every request HOLD_S, records bodies and the most requests it had at once (in
    all, and per ordering key), and answers 500 to messages whose payload says {"fail": true}."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.bodies: list[dict[str, Any]] = []
        self.in_flight = self.max_in_flight = 0
        self.key_in_flight: dict[str, int] = {}
        self.key_max_in_flight: dict[str, int] = {}
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                key = body["message"].get("orderingKey", "")
                with endpoint.lock:
                    endpoint.bodies.append(body)
                    endpoint.in_flight += 1
                    endpoint.max_in_flight = max(endpoint.max_in_flight, endpoint.in_flight)
                    now = endpoint.key_in_flight[key] = endpoint.key_in_flight.get(key, 0) + 1
                    endpoint.key_max_in_flight[key] = max(endpoint.key_max_in_flight.get(key, 0), now)
                time.sleep(HOLD_S)
                with endpoint.lock:
                    endpoint.in_flight -= 1
                    endpoint.key_in_flight[key] -= 1
                payload = json.loads(base64.b64decode(body["message"]["data"]))
                self.send_response(500 if payload.get("fail") else 204)
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def payloads(self) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(base64.b64decode(b["message"]["data"])) for b in self.bodies]


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    served = Endpoint()
    yield served
    served.server.shutdown()
    served.server.server_close()


def _relay(emulator: Any, project: str, url: str, loops: int, route: Route = ROUTE) -> PushRelay:
    subscriber = emulator.subscriber()
    routes = {route.function: (subscriber.subscription_path(project, route.subscription),
                               push_endpoint(url, project, route.topic))}
    return PushRelay(subscriber, routes, {route.function: loops}, {route.function: float(route.ack_deadline_s)})


def _wait(condition: Any, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_the_emulator_pushes_two_at_once_the_relay_as_many_as_production(pubsub_env, gcp_project, endpoint):
    create_topology(pubsub_env, {ROUTE.function: endpoint.url}, project=gcp_project, routes=[ROUTE])
    for k in range(10):
        publish_json(pubsub_env, ROUTE.topic, {"k": k}, project=gcp_project)
    _wait(lambda: len(endpoint.bodies) >= 10)
    assert endpoint.max_in_flight == 2  # the emulator's two PushLoops (0.8.20)
    emulator_body = endpoint.bodies[0]

    relay_project = gcp_project + "-r"
    relayed = Endpoint()
    try:
        create_topology(pubsub_env, {ROUTE.function: relayed.url}, project=relay_project, routes=[ROUTE], push=False)
        relay = _relay(pubsub_env, relay_project, relayed.url, PRODUCTION_MAX_INSTANCES["detail"]).start()
        try:
            for k in range(10):
                publish_json(pubsub_env, ROUTE.topic, {"k": k}, project=relay_project, account="loja-a")
            _wait(lambda: len(relayed.bodies) >= 10)
        finally:
            relay.stop()
        assert relayed.max_in_flight == PRODUCTION_MAX_INSTANCES["detail"] > 2
        assert sorted(p["k"] for p in relayed.payloads()) == list(range(10))
        body = relayed.bodies[0]
        # The same envelope as the emulator's push (what functions-framework turns into a CloudEvent).
        assert set(body) == set(emulator_body) == {"message", "subscription"}
        assert set(body["message"]) == set(emulator_body["message"])
        assert body["subscription"] == f"projects/{relay_project}/subscriptions/{ROUTE.subscription}"
        assert body["message"]["attributes"] == {"account": "loja-a"}
        assert body["message"]["messageId"] == body["message"]["message_id"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", body["message"]["publishTime"])
    finally:
        relayed.server.shutdown()
        relayed.server.server_close()


def test_a_failing_push_is_retried_then_dead_lettered_and_the_others_delivered_once(pubsub_env, gcp_project,
                                                                                      endpoint):
    create_topology(pubsub_env, {ROUTE.function: endpoint.url}, project=gcp_project, routes=[ROUTE], push=False)
    relay = _relay(pubsub_env, gcp_project, endpoint.url, 3).start()
    try:
        publish_json(pubsub_env, ROUTE.topic, {"k": "bad", "fail": True}, project=gcp_project)
        for k in range(4):
            publish_json(pubsub_env, ROUTE.topic, {"k": k}, project=gcp_project)
        dead = pull_all(pubsub_env, ROUTE.dead_letter_subscription, project=gcp_project, timeout_s=30)
    finally:
        relay.stop()
    assert [m["data"]["k"] for m in dead] == ["bad"]
    ks = [p["k"] for p in endpoint.payloads()]
    assert ks.count("bad") == ROUTE.max_delivery_attempts
    assert sorted(k for k in ks if k != "bad") == [0, 1, 2, 3]  # each good message once: acked on its 2xx
    assert relay.failed == {"detail": ROUTE.max_delivery_attempts} and relay.pushed == {"detail": 4}


def test_an_ordered_subscription_pushes_one_message_of_a_key_at_a_time_and_unkeyed_ones_freely(
        pubsub_env, gcp_project, endpoint):
    # What ADR 014 relies on: with message ordering, an account's messages (its id as key) reach the function one at
    # a time, in publish order, while the other instances serve other accounts; a message with no key is not held.
    route = dataclasses.replace(ROUTE, topic="relay-ordered", ordered_by_account=True)
    create_topology(pubsub_env, {route.function: endpoint.url}, project=gcp_project, routes=[route], push=False,
                    message_ordering=True)
    relay = _relay(pubsub_env, gcp_project, endpoint.url, 4, route).start()
    with pubsub_env.client_env():
        publisher = pubsub.new_publisher()
    try:
        for key in ("loja-a", "loja-b", ""):
            messages = [pubsub.json_bytes({"key": key, "k": k}) for k in range(4)]
            pubsub.publish_with(publisher, gcp_project, route.topic, messages, ordering_key=key,
                                **({"account": key} if key else {}))
        _wait(lambda: len(endpoint.bodies) >= 12)
    finally:
        relay.stop()
    assert endpoint.key_max_in_flight["loja-a"] == endpoint.key_max_in_flight["loja-b"] == 1
    assert endpoint.key_max_in_flight[""] >= 2  # the loops the keys left free served the unkeyed messages
    assert endpoint.max_in_flight >= 3
    for key in ("loja-a", "loja-b"):
        assert [p["k"] for p in endpoint.payloads() if p["key"] == key] == [0, 1, 2, 3]
        assert {b["message"]["orderingKey"] for b in endpoint.bodies if b["message"]["attributes"].get("account") ==
                key} == {key}
    assert relay.pushed == {"detail": 12} and not relay.failed


def test_the_emulator_never_dead_letters_a_message_of_an_ordered_subscription(pubsub_env, gcp_project, endpoint):
    # Why the local stacks that test failures keep message ordering off (local.stack.pubsub.create_topology):
    # production's Pub/Sub dead-letters on ordered subscriptions (best effort as to the order), the emulator does
    # not. Should a newer emulator do it, this fails: turn ordering on in every local stack then.
    route = dataclasses.replace(ROUTE, topic="emulator-ordered-dlq", ordered_by_account=True)
    create_topology(pubsub_env, {route.function: endpoint.url}, project=gcp_project, routes=[route],
                    message_ordering=True)
    publish_json(pubsub_env, route.topic, {"k": "bad", "fail": True}, project=gcp_project)
    _wait(lambda: len(endpoint.bodies) >= route.max_delivery_attempts)
    time.sleep(3)  # the emulator retries after 1 s: a further push or the dead letter would be here by now
    assert len(endpoint.bodies) == route.max_delivery_attempts
    # Without ordering the same message is dead-lettered: the test below.
    assert pull_all(pubsub_env, route.dead_letter_subscription, project=gcp_project, timeout_s=2) == []


def test_the_relay_concurrency_is_terraforms_max_instances():
    text = (REPO_ROOT / "infra/variables.tf").read_text(encoding="utf-8")
    block = text[text.index('variable "function_max_instances"'):]
    block = block[:block.index("\n}\n")]
    defaults = {name: int(value) for name, value in re.findall(r"(\w+)\s*=\s*optional\(number,\s*(\d+)\)", block)}
    assert {name: defaults[name] for name in PRODUCTION_MAX_INSTANCES} == dict(PRODUCTION_MAX_INSTANCES)
    assert Path(REPO_ROOT / "infra/functions.tf").read_text(encoding="utf-8").count(
        "max_instance_request_concurrency = 1") == 1  # one request per instance: loops = instances
