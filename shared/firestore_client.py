"""The Firestore client, created on first use; collection names carry a configurable prefix.

Under FIRESTORE_EMULATOR_HOST the client talks to the local emulator.
"""
from __future__ import annotations

import threading
from typing import Any

from shared import topology
from shared.config import get_settings

_client = None
_lock = threading.Lock()


def client() -> Any:
    global _client
    with _lock:
        if _client is None:
            _client = new_client(get_settings().project_id)
        return _client


def new_client(project_id: str) -> Any:
    from google.cloud import firestore

    return firestore.Client(project=project_id)


def reset_client() -> None:
    global _client
    _client = None


def collection(registered: topology.Collection) -> Any:
    """Collection `<prefix>_<name>` of one registered collection (shared.topology.COLLECTIONS)."""
    return collection_in(client(), get_settings().firestore_prefix, registered)


def collection_in(firestore: Any, prefix: str, registered: topology.Collection) -> Any:
    return firestore.collection(f"{prefix}_{registered.name}")
