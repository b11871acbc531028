"""Publishing JSON messages, waiting for every future before the function returns.

A function that returns before its publishes complete can lose them (the CPU is throttled after the response), so
publish_json() blocks until Pub/Sub has accepted every message. The client is created on first use and reused.
"""
from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from concurrent import futures
from typing import Any

from shared.config import get_settings

_publisher = None
_lock = threading.Lock()


def publisher() -> Any:
    global _publisher
    with _lock:
        if _publisher is None:
            _publisher = new_publisher()
        return _publisher


def new_publisher() -> Any:
    from google.cloud import pubsub_v1  # type: ignore[attr-defined]

    return pubsub_v1.PublisherClient()


def reset_client() -> None:
    global _publisher
    _publisher = None


def topic_path(topic: str) -> str:
    return str(publisher().topic_path(get_settings().project_id, topic))


def publish_json(topic: str, payloads: Iterable[dict[str, Any]], timeout_s: float = 60.0,
                 **attributes: str) -> list[str]:
    return publish_json_with(publisher(), get_settings().project_id, topic, payloads, timeout_s, **attributes)


def publish_json_with(client: Any, project_id: str, topic: str, payloads: Iterable[dict[str, Any]],
                      timeout_s: float = 60.0, **attributes: str) -> list[str]:
    """publish_json() through a given publisher client (a composition root's, shared.deps.Deps)."""
    path = str(client.topic_path(project_id, topic))
    pending = [client.publish(path, json.dumps(p, separators=(",", ":")).encode(), **attributes)
               for p in payloads]
    _, not_done = futures.wait(pending, timeout=timeout_s, return_when=futures.ALL_COMPLETED)
    if not_done:
        raise TimeoutError(f"{len(not_done)} of {len(pending)} publishes to {topic} did not complete")
    return [str(f.result()) for f in pending]
