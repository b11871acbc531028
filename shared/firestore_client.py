"""The Firestore client (one per process, held by the composition root shared.deps.Deps); collection names carry
a configurable prefix.

Under FIRESTORE_EMULATOR_HOST the client talks to the local emulator.
"""
from __future__ import annotations

from typing import Any

from shared import topology


def new_client(project_id: str) -> Any:
    from google.cloud import firestore

    return firestore.Client(project=project_id)


def collection_in(firestore: Any, prefix: str, registered: topology.Collection) -> Any:
    """Collection `<prefix>_<name>` of one registered collection (shared.topology.COLLECTIONS)."""
    return firestore.collection(f"{prefix}_{registered.name}")
