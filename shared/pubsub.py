"""Publishing messages (JSON payloads or raw data), waiting for every future before the function returns.

A function that returns before its publishes complete can lose them (the CPU is throttled after the response), so
publish_with() blocks until Pub/Sub has accepted every message. The client is the composition root's
(shared.deps.Deps), created once per process, with message ordering on: a message may carry an ordering key
(shared.account_order, ADR 014).
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from concurrent import futures
from typing import Any


def new_publisher() -> Any:
    from google.cloud import pubsub_v1  # type: ignore[attr-defined]

    return pubsub_v1.PublisherClient(
        publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True))


def json_bytes(payload: dict[str, Any]) -> bytes:
    """A message's data: the payload as compact JSON."""
    return json.dumps(payload, separators=(",", ":")).encode()


def publish_with(client: Any, project_id: str, topic: str, messages: Iterable[bytes], timeout_s: float = 60.0,
                 ordering_key: str = "", **attributes: str) -> list[str]:
    """Publish every message through `client`, with `ordering_key` ("" for none), and wait for all of them (or
    TimeoutError, or the publish's error); their message ids.

    A failed publish with a key pauses that key in the client: every later publish with it would fail at once, in
    this instance, for as long as it lives. So a failure resumes the key before it is raised; the caller's delivery
    fails and Pub/Sub delivers it again, and what it publishes the second time is published."""
    path = str(client.topic_path(project_id, topic))
    key = {"ordering_key": ordering_key} if ordering_key else {}
    try:
        pending = [client.publish(path, data, **key, **attributes) for data in messages]
        _, not_done = futures.wait(pending, timeout=timeout_s, return_when=futures.ALL_COMPLETED)
        if not_done:
            raise TimeoutError(f"{len(not_done)} of {len(pending)} publishes to {topic} did not complete")
        return [str(f.result()) for f in pending]
    except Exception:
        if ordering_key:
            client.resume_publish(path, ordering_key)
        raise
