"""A function's turn at one account's message: inside one of the account's lanes, or back to the end of the queue.

See shared.account_lanes (ADR 013) for why. Lanes apply only while the deployment serves two or more active
accounts: with one, there is no other account for the instances to serve, and every instance may work on it as
before. The message put back is the one received, as parsed (its payload's to_json() and its `account` attribute),
published before this delivery is acknowledged: a failed publish raises and Pub/Sub delivers the original again; a
copy and a redelivered original both run only as a duplicate, which every function absorbs (they are idempotent)."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from shared import log, topology
from shared.deps import Deps


@contextlib.contextmanager
def turn(deps: Deps, route: topology.Route, account: str, payload: dict[str, Any]) -> Iterator[bool]:
    """True inside the block when the message may run now; False when it was put back (return, nothing to do)."""
    if len(deps.accounts.active()) < 2:
        yield True
        return
    with deps.lanes.lane(account, route.function, deps.lane_policy) as held:
        if not held:
            deps.publish_json(route.topic, [payload], account=account)
            log.debug(f"the account's {deps.settings.lanes_per_account} {route.function} lane(s) are busy: message "
                      "put back at the end of the queue", event="lane_busy_requeued")
        yield held
