"""Publishing JSON messages, waiting for every future before the function returns.

A function that returns before its publishes complete can lose them (the CPU is throttled after the response), so
publish_json_with() blocks until Pub/Sub has accepted every message. The client is the composition root's
(shared.deps.Deps), created once per process.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from concurrent import futures
from typing import Any


def new_publisher() -> Any:
    from google.cloud import pubsub_v1  # type: ignore[attr-defined]

    return pubsub_v1.PublisherClient()


def publish_json_with(client: Any, project_id: str, topic: str, payloads: Iterable[dict[str, Any]],
                      timeout_s: float = 60.0, **attributes: str) -> list[str]:
    """Publish every payload as compact JSON through `client` and wait for all of them (or TimeoutError)."""
    path = str(client.topic_path(project_id, topic))
    pending = [client.publish(path, json.dumps(p, separators=(",", ":")).encode(), **attributes)
               for p in payloads]
    _, not_done = futures.wait(pending, timeout=timeout_s, return_when=futures.ALL_COMPLETED)
    if not_done:
        raise TimeoutError(f"{len(not_done)} of {len(pending)} publishes to {topic} did not complete")
    return [str(f.result()) for f in pending]
