"""The fleet-wide meter of token-endpoint calls: at most BLING_TOKEN_FLEET_CALLS_PER_MIN in any 60 s, whatever
the number of instances (docs/decisions/008).

The per-process cap of oauth.py does not bound a fleet (12 processes made 60 token calls in 0.04 s; Bling blocks
the IP at 20 in 60 s for an hour). N slot documents `<prefix>_token_meter/slot-<k>` hold the time of their last
use; a call takes a slot whose last use is more than 60 s old, with a compare-and-set write (the same
single-document precondition as the token store, ADR 003). Two uses of one slot are therefore more than 60 s
apart, and any 60-s window holds at most N calls: an exact sliding window, no hot document, no clock of ours
involved (the use is a server timestamp, compared with the read's server time).
"""
from __future__ import annotations

import datetime
import os
import random
import socket
from typing import Any

from shared import firestore_client, topology
from shared.config import Settings

_WINDOW = datetime.timedelta(seconds=60)
_HOLDER = f"{socket.gethostname()}:{os.getpid()}"


def take_slot(client: Any, settings: Settings) -> bool:
    """True when this process may make one token call now; False when the fleet made N in the last 60 s.
    `client`: the process's Firestore client (shared.deps.Deps)."""
    from google.api_core import exceptions as gexc
    from google.cloud import firestore

    meter = firestore_client.collection_in(client, settings.firestore_prefix, topology.TOKEN_METER)
    refs = [meter.document(f"slot-{k}") for k in range(max(1, settings.token_fleet_calls_per_min))]
    for _ in range(3):  # another instance may take the slot we chose between our read and our write
        free = [snap for snap in client.get_all(refs) if _free(snap)]
        if not free:
            return False
        random.shuffle(free)  # instances racing for slots spread over them instead of all taking the first
        for snap in free:
            fields = {"used_at": firestore.SERVER_TIMESTAMP, "holder": _HOLDER}  # N documents, reused: no TTL
            try:
                if snap.exists:
                    snap.reference.update(fields, option=client.write_option(
                        last_update_time=snap.update_time))
                else:
                    snap.reference.create(fields)
                return True
            except (gexc.FailedPrecondition, gexc.Conflict, gexc.AlreadyExists, gexc.NotFound):
                continue
    return False


def _free(snap: Any) -> bool:
    used = (snap.to_dict() or {}).get("used_at") if snap.exists else None
    return not isinstance(used, datetime.datetime) or used <= snap.read_time - _WINDOW
