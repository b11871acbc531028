"""Parked messages: work that cannot run now for a reason that retries cannot fix soon.

Three such reasons: Bling's daily quota is spent (it resets tomorrow), the authorization was revoked (a human
must re-authorize), or the authorization or configuration is broken (a human must fix a secret, a scope, a
setting: docs/decisions/008), or no account is connected yet. Retrying would only burn the subscription's delivery
attempts and end in the dead-letter topic, so the handler parks the message in Firestore
(`<prefix>_parked/<message id>`, with the `account` it is for when it names one) and acknowledges it.
Parked messages are published again to their topic by the next daily scheduler run, right after a new
authorization is stored, and right after a valid token pair clears a flag of the token store, so the work
resumes without anyone replaying anything. A release for one account (its pair stored, its flag cleared) publishes
that account's parked messages and those that name no account (parked while no account was connected), never
another account's: its reason (say, its daily quota) still holds.
"""
from __future__ import annotations

import datetime
from collections.abc import Iterable
from typing import Any, Protocol

from shared import log, topology
from shared.messages import PubSubMessage


class Clients(Protocol):
    """What parking needs of a composition root (shared.deps.Deps, which sits above this module)."""

    def publish(self, topic: str, messages: Iterable[bytes], **attributes: str) -> list[str]: ...

    def collection(self, registered: topology.Collection) -> Any: ...


def park(parked: Any, topic: str, message: PubSubMessage, reason: str, detail: str = "",
         account: str | None = None) -> None:
    """`parked`: the collection topology.PARKED; `reason`: the error class; `detail`: what it said (what to fix),
    for whoever looks at parked work; `account`: the account the message is for (None: it names none)."""
    # Keyed by message id: a redelivery of the same message parks it once.
    parked.document(message.message_id or f"anon-{datetime.datetime.now().timestamp()}").set({
        "topic": topic, "data": message.data, "attributes": message.attributes, "reason": reason,
        "detail": detail[:1000], "parked_at": datetime.datetime.now(tz=datetime.UTC), "account": account})


def release_all(deps: Clients, account: str | None = None, limit: int = 10_000) -> int:
    """Publish parked messages to their topic again (the message as it was, its `account` attribute included),
    deleting each after its publish is confirmed. `deps`: the caller's composition root; `account`: only that
    account's and those naming none (None: every one)."""
    released = 0
    for snapshot in deps.collection(topology.PARKED).limit(limit).stream():
        doc = snapshot.to_dict()
        if account is not None and doc.get("account") not in (None, account):
            continue
        deps.publish(doc["topic"], [doc["data"]], **(doc.get("attributes") or {}))
        snapshot.reference.delete()
        released += 1
    if released:
        log.info(f"{released} parked message(s) published again", event="parked_released", released=released,
                 **({"account": account} if account else {}))
    return released


def release_after_fix(deps: Clients, account: str | None = None) -> int:
    """release_all() for a caller whose own work is done (a pair stored, a flag cleared): a failure here is
    logged, not raised, because the next daily scheduler run releases the messages anyway."""
    try:
        return release_all(deps, account)
    except Exception as exc:  # noqa: BLE001 - see the docstring
        log.warning(f"could not release parked messages now; the next daily run will: {exc}",
                    event="parked_release_failed", error_type=type(exc).__name__)
        return 0
