"""Count the parked messages (shared/parking.py) by reason and topic: work waiting for Bling's daily limit to reset
(DailyLimitReached) or for a new authorization (ReauthorizationRequired), not dead-lettered.

    GOOGLE_CLOUD_PROJECT=my-project FIRESTORE_PREFIX=bling python -m shared.ops.parked

Reads only; the next daily run and the next authorization publish them again.
"""
from __future__ import annotations

import collections
import sys

from shared import topology
from shared.deps import Deps


def count_parked(deps: Deps) -> dict[tuple[str, str], int]:
    """(reason, topic) -> number of parked messages."""
    counts: collections.Counter[tuple[str, str]] = collections.Counter()
    for snapshot in deps.collection(topology.PARKED).select(["reason", "topic"]).stream():
        doc = snapshot.to_dict() or {}
        counts[(doc.get("reason", "?"), doc.get("topic", "?"))] += 1
    return dict(counts)


def main(argv: list[str] | None = None) -> int:
    counts = count_parked(Deps.from_environment())
    total = sum(counts.values())
    print(f"{total} parked message(s)")
    for (reason, topic), count in sorted(counts.items()):
        print(f"  {reason:<28} {topic:<16} {count}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
