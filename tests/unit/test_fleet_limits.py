"""The fleet-wide caps of ADR 012 over fakes of our ledger and counter interfaces (shared.bling.fleet_limits)."""
from __future__ import annotations

import threading
import time

import pytest

from shared.bling.fleet_limits import ERROR_WINDOW_S, FleetBudget, FleetErrorCap, TokenCallBudget
from shared.bling.rate_budget import grid_phase
from shared.errors import RetryableError
from tests.integration.bling.measure_rate_ledger import max_in_window
from tests.unit.fakes import FakeClock, FakeErrorCounts, FakeTickLedger

# Bling's limits ×4 in time: an account at 11.2/s (its budget under 12), the fleet cap at 23.2/s (under 24);
# "a second" is then 0.25 s (×10 would leave 0.4 ms windows to the threads' jitter on a busy machine).
_SPEEDUP = 4.0


def _accounts(n: int, fleet: FakeTickLedger | None) -> list[tuple[FakeTickLedger, FleetBudget]]:
    accounts = [FakeTickLedger(time.time, 2.8 * _SPEEDUP, phase=grid_phase(f"loja-{k}"), sleep=time.sleep)
                for k in range(n)]
    return [(a, FleetBudget(a, fleet, None, 60.0)) for a in accounts]


def _run(pairs: list[tuple[FakeTickLedger, FleetBudget]], requests_each: int) -> tuple[list[float], float]:
    """Every account sends `requests_each` requests from a thread of its own; the sends and the wall time."""
    def one(budget: FleetBudget) -> None:
        for _ in range(requests_each):
            budget.acquire()

    threads = [threading.Thread(target=one, args=(budget,)) for _, budget in pairs]
    started = time.time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return sorted(t for account, _ in pairs for t in account.sends), time.time() - started


def test_four_accounts_at_their_own_budget_stay_under_the_fleet_cap():
    fleet = FakeTickLedger(time.time, 5.8 * _SPEEDUP, sleep=time.sleep)
    pairs = _accounts(4, fleet)

    sends, _wall = _run(pairs, 6)

    assert len(sends) == 24
    assert max_in_window(sends, 1 / _SPEEDUP) <= 6  # ceil(5.8 × (1 + 15 % of a fleet tick)) = 6
    for account, _ in pairs:
        assert max_in_window(account.sends, 1 / _SPEEDUP) <= 3  # every account still inside its own 3/s
    assert sum(account.dropped_for_fleet for account, _ in pairs) > 0  # the fleet, not the accounts, was the limit
    tick = 1 / fleet.tick_s
    for t in sends:  # each send inside a fleet tick's window (and its account's: the account's own check)
        assert t - int(t * tick) / tick <= fleet.slack_s + 0.002


def test_without_the_fleet_cap_four_accounts_send_twelve_a_second():
    pairs = _accounts(4, None)

    sends, _wall = _run(pairs, 10)

    assert len(sends) == 40
    assert max_in_window(sends, 1 / _SPEEDUP) >= 9  # 4 × 2.8 = 11.2/s: the cap of the other test is what kept it at 6


def test_accounts_on_one_grid_would_starve_the_fleet_the_phase_spreads_them():
    """Why each account's grid has its own phase: with one grid for all, every account wants the same 15 % of each
    tick and the fleet's slots in the rest go unused (14 accounts × 2.8/s against a cap of 40/s)."""
    speedup = 5.0  # a fleet tick of 5 ms, a window of 0.75 ms: finer would measure the threads' jitter

    def throughput(phases: list[float]) -> float:
        fleet = FakeTickLedger(time.time, 40.0 * speedup, sleep=time.sleep)
        pairs = [(a, FleetBudget(a, fleet, None, 60.0))
                 for a in (FakeTickLedger(time.time, 2.8 * speedup, phase=p, sleep=time.sleep) for p in phases)]
        sends, _wall = _run(pairs, 4)
        return len(sends) / (sends[-1] - sends[0]) / speedup

    # Measured: 6.0/s on one grid (every account's window holds ~2 fleet ticks), 21-23/s with the phases.
    one_grid = throughput([0.0] * 14)
    spread = throughput([grid_phase(f"client-{k}") for k in range(14)])
    assert one_grid < 10
    assert spread > 2 * one_grid


def test_a_fleet_slot_held_elsewhere_drops_the_account_tick_and_the_next_one_is_tried():
    clock = FakeClock()
    account = FakeTickLedger(clock, 2.8)
    fleet = FakeTickLedger(clock, 40.0)
    first = account.claim()
    account.taken.discard(first.tick)
    # Another process holds every fleet tick in the window of the account's next tick.
    fleet.taken.update(n for n in range(int(first.start * 40) - 2, int(first.end * 40) + 2))

    ops = FleetBudget(account, fleet, None, 60.0, clock.sleep).acquire()

    assert account.dropped_for_fleet == 1
    assert account.sends and account.sends[0] > first.end
    assert ops >= 3  # two account claims and at least one fleet claim


def test_phase_is_spread_by_the_account_and_zero_for_the_legacy_key():
    phases = {grid_phase(f"loja-{k}") for k in range(50)}

    assert grid_phase("") == 0.0
    assert all(0.0 <= p < 1.0 for p in phases) and len(phases) == 50
    assert grid_phase("loja-a") == grid_phase("loja-a")


def test_errors_under_the_cap_do_not_pause_and_at_the_cap_pause_until_they_leave_bling_s_window():
    clock = FakeClock(1000 * ERROR_WINDOW_S + 2.0)
    counts = FakeErrorCounts()
    cap = FleetErrorCap(counts, 5, clock)
    other_instance = FleetErrorCap(counts, 5, clock)

    for _ in range(4):
        other_instance.count_error()
    assert cap.paused_until() == 0.0
    cap.count_error()  # its own error is known without a read

    assert cap.paused_until() == 1001 * ERROR_WINDOW_S
    # Bling's 10 s slide: in the next window the 5 errors are still less than 10 s old, so the pause goes on
    # until that window ends too (the windows are aligned; any 10 s lies within the previous and the current one).
    cap.wait_while_paused(60.0, clock.sleep)
    assert clock() == 1002 * ERROR_WINDOW_S
    assert cap.paused_until() == 0.0


def test_the_error_counts_are_read_at_most_once_a_second():
    clock = FakeClock(10_000.0)
    counts = FakeErrorCounts()
    cap = FleetErrorCap(counts, 250, clock)

    for _ in range(20):
        cap.paused_until()
        clock.sleep(0.1)

    assert counts.reads == 2


def test_a_pause_longer_than_the_wait_cap_is_retryable_not_slept():
    clock = FakeClock(500 * ERROR_WINDOW_S)
    counts = FakeErrorCounts()
    counts.by_window[500] = 300
    cap = FleetErrorCap(counts, 250, clock)

    with pytest.raises(RetryableError):
        cap.wait_while_paused(5.0, clock.sleep)
    assert clock() == 500 * ERROR_WINDOW_S


def test_the_budget_waits_for_the_error_pause_before_claiming():
    clock = FakeClock(700 * ERROR_WINDOW_S + 3.0)
    counts = FakeErrorCounts()
    counts.by_window[700] = 250
    account = FakeTickLedger(clock, 2.8)
    budget = FleetBudget(account, FakeTickLedger(clock, 40.0), FleetErrorCap(counts, 250, clock), 60.0,
                         clock.sleep)

    budget.acquire()

    assert account.sends[0] >= 701 * ERROR_WINDOW_S


def test_token_calls_take_a_fleet_slot_and_count_their_errors():
    clock = FakeClock()
    fleet = FakeTickLedger(clock, 40.0)
    counts = FakeErrorCounts()
    token_calls = TokenCallBudget(fleet, FleetErrorCap(counts, 250, clock), 60.0)

    token_calls.acquire()
    token_calls.count_error()

    assert len(fleet.sends) == 1
    assert sum(counts.by_window.values()) == 1


def test_with_the_fleet_cap_on_every_account_s_client_takes_the_one_fleet_ledger(monkeypatch):
    from shared.bling.rate_budget import FLEET_LEDGER_KEY
    from shared.config import read_settings
    from shared.deps import Deps

    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", "127.0.0.1:9")  # clients are built, nothing is called
    monkeypatch.setenv("BLING_FLEET_RATE_PER_S", "40")
    monkeypatch.setenv("BLING_FLEET_ERRORS_PER_10S", "250")
    deps = Deps(read_settings())
    a, b = deps.account("loja-a"), deps.account("loja-b")

    for account in (a, b):
        budget = account.client._budget
        assert isinstance(budget, FleetBudget)
        assert budget._account is account.rate_ledger and budget._fleet is deps.fleet_ledger
        assert account.client._fleet_errors is deps.fleet_errors
    assert deps.fleet_ledger is not None and deps.fleet_ledger.tick_id(7) == f"{FLEET_LEDGER_KEY}|000000000007"
    assert isinstance(deps.oauth._fleet, TokenCallBudget)


def test_with_the_fleet_cap_off_the_client_takes_the_account_s_ledger_alone(monkeypatch):
    from shared.config import read_settings
    from shared.deps import Deps

    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", "127.0.0.1:9")
    monkeypatch.delenv("BLING_FLEET_RATE_PER_S", raising=False)
    monkeypatch.delenv("BLING_FLEET_ERRORS_PER_10S", raising=False)
    deps = Deps(read_settings())
    account = deps.account("loja-a")

    assert account.client._budget is account.rate_ledger
    assert deps.fleet_ledger is None and deps.fleet_errors is None and deps.oauth._fleet is None
