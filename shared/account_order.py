"""Which ordering key a message is published with: its account's, while two or more accounts are active (ADR 014).

Pub/Sub pushes a subscription's messages roughly in publish order, to as many instances as the function may have.
When one account's backfill has published its batches first, every instance takes that account's batches: they
queue on its rate budget (3 requests/s is the account's, whatever the instances) while the next account's batches
wait behind them with their budget unused. With the account as ordering key, on a subscription with message
ordering, Pub/Sub pushes one message of an account at a time and gives the other instances the other accounts'
messages: the accounts run side by side by construction, and no instance passes over a busy account's messages.

With a single active account there is no other account to make room for, and one message at a time would leave
its budget to one instance per function: its messages carry no key, and every instance may work on it, as before.
A message that names no account (an operator's, in today's single-account format) carries none either.
"""
from __future__ import annotations

from shared import topology


def ordering_key(topic: str, account: str | None, active_accounts: int) -> str:
    """The ordering key for a message of `account` on `topic`: the account's id, or "" (none)."""
    route = topology.route_of(topic)
    if not account or route is None or not route.ordered_by_account or active_accounts < 2:
        return ""
    return account
