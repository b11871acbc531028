"""Lanes (shared.account_lanes, ADR 013): a function works on at most BLING_LANES_PER_ACCOUNT messages of one account
at once, against the Firestore emulator; a message that finds its account's lanes busy goes back to the end of the
queue unrun, and nothing of it is lost."""
from __future__ import annotations

import json
import time

import pytest

from local import verify
from shared import topology
from shared.account_lanes import AccountLanes, LanePolicy
from shared.account_registry import AccountStatus
from shared.accounts import schema_for
from tests.integration.accounts.test_accounts_pipeline import (  # two_companies: the fixture
    JANUARY,
    A,
    B,
    january_ids,
    stored_ids,
    two_companies,
)
from tests.integration.data.pipeline_driver import Pipeline, envelope, handler
from tests.integration.process_deps import current_deps

LONG = LanePolicy(capacity=2, lease_s=600, wait_s=0.2)


@pytest.fixture
def lanes(firestore_env) -> AccountLanes:
    return current_deps().lanes


def test_a_function_holds_at_most_capacity_lanes_of_one_account(lanes):
    first, second = lanes.enter(A, "detail", LONG), lanes.enter(A, "detail", LONG)
    assert first and second and first.ref.id != second.ref.id
    started = time.monotonic()
    assert lanes.enter(A, "detail", LONG) is None  # full: put back at once, the first in a row
    assert time.monotonic() - started < LONG.wait_s
    started = time.monotonic()
    assert lanes.enter(A, "detail", LONG) is None  # the second in a row waits, looks again, and gives up
    assert time.monotonic() - started >= LONG.wait_s
    # Another account's lanes, and the same account's lanes in another function, are their own.
    assert lanes.enter(B, "detail", LONG) and lanes.enter(A, "enrich", LONG)
    assert lanes.holders(A, "detail", 2) == 2
    lanes.leave(first)
    assert lanes.holders(A, "detail", 2) == 1
    assert lanes.enter(A, "detail", LONG)


def test_an_instance_waits_longer_with_each_message_it_puts_back_in_a_row(firestore_env):
    deps, waits = current_deps(), []
    lanes = AccountLanes(deps.firestore, deps.collection(topology.LANES), sleep=waits.append)
    policy = LanePolicy(capacity=1, lease_s=600, wait_s=0.05, max_wait_s=0.3)
    assert lanes.enter(A, "detail", policy)
    for _ in range(5):
        assert lanes.enter(A, "detail", policy) is None
    assert waits == [0.05, 0.1, 0.2, 0.3]  # none before the first put-back; doubled, then capped
    assert lanes.enter(B, "detail", policy)  # a message that runs ends the streak
    assert lanes.enter(A, "detail", policy) is None
    assert waits[4:] == []


def test_the_lane_of_an_instance_that_died_frees_when_its_lease_ends(lanes):
    short = LanePolicy(capacity=1, lease_s=0.3, wait_s=0.0)
    dead = lanes.enter(A, "lister", short)  # never left: the instance died
    assert dead and lanes.enter(A, "lister", short) is None
    time.sleep(0.35)
    assert lanes.enter(A, "lister", short)  # the lane of the instance that died, taken over
    lanes.leave(dead)  # a late leave of the dead holder's does not free its successor's lane
    assert lanes.holders(A, "lister", 1) == 1


def test_a_lane_held_longer_than_its_lease_is_renewed_not_taken_over(lanes):
    policy = LanePolicy(capacity=1, lease_s=0.3, wait_s=0.0)
    with lanes.lane(A, "detail", policy) as held:
        assert held
        for _ in range(4):  # 1.2 s: four leases
            time.sleep(0.3)
            assert lanes.enter(A, "detail", policy) is None
    assert lanes.enter(A, "detail", policy)


def test_the_context_leaves_its_lane_also_when_the_work_raises(lanes):
    with pytest.raises(RuntimeError), lanes.lane(A, "detail", LONG) as held:
        assert held and lanes.holders(A, "detail", 2) == 1
        raise RuntimeError("the batch failed")
    assert lanes.holders(A, "detail", 2) == 0
    with lanes.lane(A, "detail", LanePolicy(capacity=0, lease_s=1, wait_s=0)) as held:  # 0: no limit
        assert held and lanes.holders(A, "detail", 2) == 0


def test_a_window_of_an_account_with_busy_lanes_is_put_back_unrun_and_then_listed(
        two_companies, postgres, pubsub_topology, capsys):
    deps = current_deps()
    policy = deps.lane_policy
    assert (policy.capacity, policy.lease_s, policy.wait_s) == (2, 30.0, 0.05)  # the defaults
    held = [deps.lanes.enter(A, "lister", policy) for _ in range(policy.capacity)]  # two instances of A at work
    two_companies.reset_stats()

    handler("scheduler")(envelope({"month": JANUARY, "account": A}))
    windows = pubsub_topology.pull(topology.WINDOWS.topic)
    assert len(windows) == 1
    capsys.readouterr()
    handler("lister")(envelope(windows[0]["data"]))  # returns: the push is acknowledged

    assert two_companies.app.request_log() == []  # nothing ran against Bling
    back = pubsub_topology.pull(topology.WINDOWS.topic)
    assert [m["data"] for m in back] == [windows[0]["data"]] and back[0]["attributes"] == {"account": A}
    assert pubsub_topology.pull(topology.NFE.topic, timeout_s=0) == []
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [line["event"] for line in lines if line.get("event") == "lane_busy_requeued"] == ["lane_busy_requeued"]
    requeued = next(line for line in lines if line.get("event") == "lane_busy_requeued")
    assert requeued["account"] == A and requeued["function"] == "lister" and requeued["severity"] == "DEBUG"

    # Another account is not held up by A's busy lanes.
    pipeline = Pipeline(pubsub_topology)
    pipeline.deliver(topology.SCHEDULE.topic, {"month": JANUARY, "account": B})
    pipeline.drain()
    assert stored_ids(postgres, B) == january_ids(two_companies, B)

    for holder in held:  # A's instances finish; the window put back runs, and A's month is complete
        deps.lanes.leave(holder)
    pipeline.deliver(topology.WINDOWS.topic, back[0]["data"])
    pipeline.drain()
    assert stored_ids(postgres, A) == january_ids(two_companies, A)
    conn = postgres.connect(schema_for(A))
    try:
        assert verify.verify(conn, verify.normalize_truth(two_companies.truth(account=A)), [JANUARY]).ok
    finally:
        conn.close()


def test_with_one_active_account_every_instance_may_work_on_it(two_companies, postgres, pubsub_topology):
    deps = current_deps()
    deps.accounts.set_status(B, AccountStatus.PAUSED, "the test")
    deps.accounts.active(fresh=True)
    held = [deps.lanes.enter(A, "lister", deps.lane_policy) for _ in range(deps.lane_policy.capacity)]
    assert all(held)

    pipeline = Pipeline(pubsub_topology)
    pipeline.deliver(topology.SCHEDULE.topic, {"month": JANUARY, "account": A})
    pipeline.drain()  # listed in a third lister instance: nothing was put back

    assert stored_ids(postgres, A) == january_ids(two_companies, A)
    assert pipeline.delivered[topology.WINDOWS.topic] == 1
