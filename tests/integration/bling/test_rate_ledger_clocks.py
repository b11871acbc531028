"""Issue 10 item 10: the rate ledger does not trust local clocks and never sleeps without bound (ADR 001)."""
from __future__ import annotations

import contextlib
import math
import threading
import time

import pytest

from shared import topology
from shared.errors import RetryableError
from tests.integration.bling.helpers import set_env
from tests.integration.process_deps import current_deps, rate_ledger


def _acquire_within(seconds: float) -> tuple[bool, object]:
    """Run acquire() in a thread; (returned in time, its exception or None)."""
    box: dict[str, object] = {}

    def run() -> None:
        try:
            rate_ledger().acquire()
        except Exception as exc:  # noqa: BLE001 - inspected
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    return not thread.is_alive(), box.get("error")


def test_a_far_future_tick_from_a_skewed_clock_does_not_make_the_fleet_sleep(firestore_env):
    set_env(BLING_RATE_BUDGET_PER_S=5)
    skewed = math.ceil((time.time() + 3600) * 5)  # a laptop one hour ahead ran reconcile
    current_deps().collection(topology.RATE_TICKS).document(rate_ledger().tick_id(skewed)).create(
        {"tick": skewed, rate_ledger().ledger_field: skewed, "holder": "laptop"})
    rate_ledger().acquire()  # our first claim: the next ones ask the ledger for its highest tick after conflicts
    from google.api_core import exceptions as gexc

    now_tick = math.ceil(time.time() * 5)
    ticks = current_deps().collection(topology.RATE_TICKS)
    for n in range(now_tick - 1, now_tick + 6):  # our next claim conflicts, so it asks the ledger
        with contextlib.suppress(gexc.Conflict, gexc.AlreadyExists):  # our own first claim
            ticks.document(rate_ledger().tick_id(n)).create(
                {"tick": n, rate_ledger().ledger_field: n, "holder": "other"})

    done, error = _acquire_within(5.0)

    assert done and error is None, error


def test_a_process_whose_clock_runs_ahead_claims_ticks_at_the_real_time(firestore_env, monkeypatch):
    set_env(BLING_RATE_BUDGET_PER_S=5)
    monkeypatch.setattr(rate_ledger(), "_wall_clock", lambda: time.time() + 3600)

    rate_ledger().acquire()

    claimed = [d.get("tick") for d in current_deps().collection(topology.RATE_TICKS).stream()]
    assert claimed and all(abs(n / 5 - time.time()) < 10 for n in claimed), claimed


def test_waits_are_capped(firestore_env):
    set_env(BLING_RATE_BUDGET_PER_S=5, BLING_RATE_MAX_WAIT_S=1)
    first = math.ceil(time.time() * 5)
    ticks = current_deps().collection(topology.RATE_TICKS)
    batch = current_deps().firestore.batch()
    for n in range(first - 1, first + 25):  # the next 5 s are taken
        batch.create(ticks.document(rate_ledger().tick_id(n)),
                     {"tick": n, rate_ledger().ledger_field: n, "holder": "other"})
    batch.commit()

    started = time.monotonic()
    with pytest.raises(RetryableError):
        rate_ledger().acquire()
    assert time.monotonic() - started < 2.0
