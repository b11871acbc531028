"""A function's turn at one account's message: inside one of the account's lanes, or back to the end of the queue.

See shared.account_lanes (ADR 013) for why. The message put back is the one received, as parsed (its payload's
to_json() and its `account` attribute), published before this delivery is acknowledged: a failed publish raises and
Pub/Sub delivers the original again; a publish whose delivery is then acknowledged twice is a duplicate, which every
function absorbs (they are idempotent)."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from shared import log, topology
from shared.deps import Deps


@contextlib.contextmanager
def turn(deps: Deps, route: topology.Route, account: str, payload: dict[str, Any]) -> Iterator[bool]:
    """True inside the block when the message may run now; False when it was put back (return, nothing to do)."""
    with deps.lanes.lane(account, route.function, deps.lane_policy) as held:
        if not held:
            deps.publish_json(route.topic, [payload], account=account)
            log.info(f"the account's {deps.settings.lanes_per_account} {route.function} lane(s) are busy: message "
                     "put back at the end of the queue", event="lane_busy_requeued")
        yield held
