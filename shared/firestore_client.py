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
            from google.cloud import firestore

            _client = firestore.Client(project=get_settings().project_id)
        return _client


def reset_client() -> None:
    global _client
    _client = None


def collection(registered: topology.Collection) -> Any:
    """Collection `<prefix>_<name>` of one registered collection (shared.topology.COLLECTIONS)."""
    return client().collection(f"{get_settings().firestore_prefix}_{registered.name}")
