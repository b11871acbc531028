"""The Firestore tick ledger on the real emulator: one owner per tick, sends inside their tick, TTL field."""
from __future__ import annotations

import datetime
import itertools
import math
import time

from shared import topology
from tests.integration.bling.helpers import reset_bling_state, set_env
from tests.integration.bling.measure_rate_ledger import max_in_window, run
from tests.integration.process_deps import current_deps, rate_ledger


def test_sends_are_spaced_by_the_budget_and_start_inside_their_tick(firestore_env):
    set_env(BLING_RATE_BUDGET_PER_S=5)
    sends = []
    for _ in range(6):
        rate_ledger().acquire()
        sends.append(time.time())

    tick, slack = 0.2, 0.15 * 0.2
    for sent in sends:
        assert (sent % tick) <= slack + 0.01, f"sent {sent % tick:.3f} s into its tick"
    assert min(b - a for a, b in itertools.pairwise(sends)) >= tick - slack
    docs = list(current_deps().collection(topology.RATE_TICKS).stream())
    assert len(docs) == 6 + rate_ledger().stats().dropped_late  # a claim that came back too late is abandoned
    assert all(d.get("expire_at") > datetime.datetime.now(tz=datetime.UTC) for d in docs)
    assert all(d.id == rate_ledger().tick_id(d.get("tick")) for d in docs)  # keyed by the account


def test_ticks_held_by_another_instance_are_skipped(firestore_env):
    set_env(BLING_RATE_BUDGET_PER_S=5)
    first_free = math.ceil(time.time() / 0.2) + 1
    ticks = current_deps().collection(topology.RATE_TICKS)
    for n in range(first_free - 1, first_free + 5):  # another instance queued 6 sends (1.2 s)
        ticks.document(rate_ledger().tick_id(n)).create({"tick": n, rate_ledger().ledger_field: n, "holder": "other"})

    rate_ledger().acquire()
    sent = time.time()

    assert sent >= (first_free + 5) * 0.2 - 0.01
    assert rate_ledger().stats().conflicts >= 1
    mine = [d for d in ticks.stream() if d.get("holder") != "other"]
    assert len(mine) == 1 and mine[0].get("tick") > first_free + 4


def test_separate_processes_share_one_budget(firestore_env):
    result = run(workers=3, budget=2.8, requests=4)

    assert result["requests"] == 12
    assert result["max_in_any_1s"] <= 3
    assert result["achieved_per_s"] <= 2.9


def test_max_in_window_counts_a_sliding_second():
    assert max_in_window([0.0, 0.3, 0.6, 0.99, 1.0, 1.5]) == 4
    assert max_in_window([0.0, 0.36, 0.72, 1.08]) == 3
