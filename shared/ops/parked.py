"""Count the parked messages (shared/parking.py) per account, reason and topic: work waiting for Bling's daily limit
to reset (DailyLimitReached), for a new authorization (ReauthorizationRequired, AuthorizationBroken) or for an
account to be connected (NoAccountConnected), not dead-lettered.

    GOOGLE_CLOUD_PROJECT=my-project FIRESTORE_PREFIX=bling python -m shared.ops.parked [--account lojas-stilli]

Reads only; the next daily run and the next authorization publish them again. A message parked before messages
named their account counts for the deployment's only account, or as "(no account)" when there are several.
"""
from __future__ import annotations

import argparse
import collections
import sys

from shared import account_status, topology
from shared.deps import Deps
from shared.ops import account_arg

NO_ACCOUNT = "(no account)"


def count_parked(deps: Deps, account: str | None = None) -> dict[tuple[str, str, str], int]:
    """(account, reason, topic) -> number of parked messages; only `account`'s when given."""
    registered = list(deps.accounts.all(fresh=True))
    legacy_owner = registered[0] if len(registered) == 1 else NO_ACCOUNT
    counts: collections.Counter[tuple[str, str, str]] = collections.Counter()
    for snapshot in deps.collection(topology.PARKED).select(["reason", "topic", "account", "attributes"]).stream():
        doc = snapshot.to_dict() or {}
        owner = account_status.message_account(doc) or legacy_owner
        if account is None or owner == account:
            counts[(owner, doc.get("reason", "?"), doc.get("topic", "?"))] += 1
    return dict(counts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--account", type=account_arg, help="one account only (default: every account)")
    args = parser.parse_args(argv)
    counts = count_parked(Deps.from_environment(), args.account)  # the command's composition root
    print(f"{sum(counts.values())} parked message(s)")
    for (account, reason, topic), count in sorted(counts.items()):
        print(f"  {account:<22} {reason:<28} {topic:<16} {count}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
