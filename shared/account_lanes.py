"""How many of one account's messages a function works on at once: its lanes (ADR 013).

Pub/Sub pushes a subscription's messages roughly in publish order, to as many instances as the function may have.
When one account's backfill has published its batches first, every instance takes that account's batches: they
queue on its rate budget (3 requests/s is the account's, whatever the instances) while the next account's batches
wait behind them with their budget unused. A function therefore works on at most `capacity` messages of one
account at a time; an instance that finds the account's lanes full puts the message back at the end of the queue
(the caller republishes it) and takes the next, which is soon another account's.

Lane k of an account in a function is the document `<account>|<function>|<k>`, taken by create() and given back
by a delete conditioned on its last update time, as the rate ledger's ticks are (ADR 001): no transaction, so
instances never wait on each other's locks (Firestore in pessimistic mode, and its emulator, time a contended
transaction out). The holder renews its lease every third of it while it works; a lane whose holder died is taken
over once the lease has ended, so a crash costs the account one lane for at most one lease.
"""
from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from google.api_core import exceptions as gexc


@dataclasses.dataclass(frozen=True)
class LanePolicy:
    """capacity: lanes per account and function (0: no limit); lease_s: a holder's lease, renewed every third of
    it while the holder works; wait_s: how long an instance that has just put a message back waits, at the next
    full lanes, before it looks once more; the wait doubles with every message it puts back in a row, up to
    max_wait_s, and is gone once it runs one. So an instance passes quickly over a few busy accounts' messages to
    reach another account's, and one with nothing but busy accounts' messages to deliver does not spin on them."""
    capacity: int
    lease_s: float
    wait_s: float
    max_wait_s: float = 0.5


@dataclasses.dataclass
class Lane:
    """A lane held: its document and the update time of our last write to it (the precondition of the next)."""
    ref: Any
    update_time: Any
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)


class AccountLanes:
    def __init__(self, firestore: Any, collection: Any, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._firestore = firestore
        self._collection = collection
        self._clock = clock
        self._sleep = sleep
        # When this process last looked for an ended lease of (account, function): an instance that keeps meeting
        # full lanes looks once per third of a lease, not on every message it puts back.
        self._looked_for_ended: dict[tuple[str, str], float] = {}
        # Per thread, the messages that found full lanes since one got a lane: an instance serves one request at a
        # time (infra/functions.tf), so a thread is an instance; a local process serving several at once has one
        # streak per request thread, not one for all.
        self._streak = threading.local()

    @contextlib.contextmanager
    def lane(self, account: str, function: str, policy: LanePolicy) -> Iterator[bool]:
        """True inside the block when this instance holds one of the account's lanes (always, when the policy sets
        no limit); False when they stayed full: the caller puts the message back."""
        if policy.capacity <= 0:
            yield True
            return
        held = self.enter(account, function, policy)
        if held is None:
            yield False
            return
        stop = threading.Event()
        renewer = threading.Thread(target=self._renew_until, args=(held, policy, stop), daemon=True,
                                   name=f"lane-{account}-{function}")
        renewer.start()
        try:
            yield True
        finally:
            stop.set()
            renewer.join()
            self.leave(held)

    def enter(self, account: str, function: str, policy: LanePolicy) -> Lane | None:
        """A free lane, taken; else (after the wait of LanePolicy) a free one or one whose lease ended; else None."""
        refs = self._refs(account, function, policy.capacity)
        lane = self._take_free(refs, policy)
        streak: int = getattr(self._streak, "count", 0)
        if lane is None and streak:
            self._sleep(min(policy.wait_s * 2 ** (streak - 1), policy.max_wait_s))
            lane = self._take_free(refs, policy)
        looked = self._looked_for_ended.get((account, function), 0.0)
        if lane is None and self._clock() - looked >= policy.lease_s / 3:
            self._looked_for_ended[(account, function)] = self._clock()
            lane = self._take_expired(refs, policy)
        self._streak.count = 0 if lane is not None else streak + 1
        return lane

    def leave(self, lane: Lane) -> None:
        """Give the lane back, unless its lease ended and another instance took it over meanwhile."""
        with lane.lock, contextlib.suppress(gexc.FailedPrecondition, gexc.NotFound):
            lane.ref.delete(option=self._firestore.write_option(last_update_time=lane.update_time))

    def renew(self, lane: Lane, policy: LanePolicy) -> bool:
        """Extend the lease by policy.lease_s from now; False when the lane is no longer ours (the lease had ended
        and another instance took it over: the work goes on, one lane over the capacity until it ends)."""
        with lane.lock:
            try:
                result = lane.ref.update({"expires": self._clock() + policy.lease_s},
                                         option=self._firestore.write_option(last_update_time=lane.update_time))
            except (gexc.FailedPrecondition, gexc.NotFound):
                return False
            lane.update_time = result.update_time
            return True

    def _renew_until(self, lane: Lane, policy: LanePolicy, stop: threading.Event) -> None:
        while not stop.wait(policy.lease_s / 3):
            try:
                if not self.renew(lane, policy):
                    return
            except gexc.GoogleAPICallError:  # Firestore unreachable for a moment: the next renewal may succeed
                continue

    def holders(self, account: str, function: str, capacity: int) -> int:
        """The lanes held now, leases not ended (what a test or a diagnosis reads)."""
        now = self._clock()
        return sum(1 for snap in self._firestore.get_all(self._refs(account, function, capacity)) if _held(snap, now))

    def _refs(self, account: str, function: str, capacity: int) -> list[Any]:
        """The documents of the account's lanes in the function: `<account>|<function>|<k>`."""
        return [self._collection.document(f"{account}|{function}|{k}") for k in range(capacity)]

    def _take_free(self, refs: list[Any], policy: LanePolicy) -> Lane | None:
        for ref in refs:
            try:
                result = ref.create({"expires": self._clock() + policy.lease_s})
            except (gexc.Conflict, gexc.AlreadyExists):
                continue
            return Lane(ref, result.update_time)
        return None

    def _take_expired(self, refs: list[Any], policy: LanePolicy) -> Lane | None:
        now = self._clock()
        for snap in self._firestore.get_all(refs):  # one round trip for all the lanes
            if not snap.exists or _held(snap, now):
                continue
            ref = snap.reference
            try:  # only the holder that died's document: a lane given back and taken again meanwhile stays
                ref.delete(option=self._firestore.write_option(last_update_time=snap.update_time))
            except (gexc.FailedPrecondition, gexc.NotFound):
                continue
            lane = self._take_free([ref], policy)
            if lane is not None:
                return lane
        return None


def _held(snap: Any, now: float) -> bool:
    """The document is a lane whose lease has not ended."""
    if not snap.exists:
        return False
    expires = (snap.to_dict() or {}).get("expires")
    return isinstance(expires, (int, float)) and expires > now
