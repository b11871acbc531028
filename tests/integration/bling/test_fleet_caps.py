"""The fleet-wide caps of ADR 012 on the Firestore emulator: several accounts' ledgers and the fleet's ledger, as
the functions build them (shared.deps.Deps), and the error counts shared by two instances."""
from __future__ import annotations

import threading
import time

import pytest

from shared import config, topology
from shared.bling.errors import BlingNotFound
from shared.bling.fleet_limits import FirestoreErrorCounts
from shared.deps import Deps
from shared.errors import RetryableError
from tests.integration.bling.helpers import set_env
from tests.integration.bling.measure_rate_ledger import max_in_window
from tests.integration.process_deps import account_client, current_deps

_ACCOUNTS = ("loja-a", "loja-b", "loja-c", "loja-d")


def _grant_times(deps: Deps, requests_each: int) -> dict[str, list[float]]:
    """Every account sends `requests_each` requests from a thread of its own through the budget its client uses;
    the times the budget let each one go."""
    times: dict[str, list[float]] = {account: [] for account in _ACCOUNTS}

    def one(account: str) -> None:
        budget = deps.fleet_budget(deps.account(account).rate_ledger)
        for _ in range(requests_each):
            budget.acquire()
            times[account].append(time.time())

    threads = [threading.Thread(target=one, args=(account,)) for account in _ACCOUNTS]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return times


def test_four_accounts_at_3_per_s_stay_under_a_fleet_cap_of_6_per_s(firestore_env):
    set_env(BLING_RATE_BUDGET_PER_S=2.8, BLING_FLEET_RATE_PER_S=5.8)

    times = _grant_times(Deps(config.read_settings()), 6)

    fleet = sorted(t for account in times.values() for t in account)
    assert len(fleet) == 24
    assert max_in_window(fleet) <= 6  # ceil(5.8 × (1 + 15 % of a fleet tick)) = 6: Bling's IP sees at most 6/s
    for account, sent in times.items():
        assert max_in_window(sent) <= 3, account  # and each account stays inside its own 3/s


def test_with_the_fleet_cap_off_four_accounts_send_at_twelve_per_s(firestore_env):
    set_env(BLING_RATE_BUDGET_PER_S=2.8, BLING_FLEET_RATE_PER_S=0)
    deps = Deps(config.read_settings())

    times = _grant_times(deps, 8)

    assert deps.fleet_ledger is None
    fleet = sorted(t for account in times.values() for t in account)
    assert max_in_window(fleet) >= 9  # 4 × 2.8/s: what the cap of the test above holds at 6
    for account, sent in times.items():
        assert max_in_window(sent) <= 3, account


def test_an_instance_pauses_on_the_errors_another_instance_counted(firestore_env):
    set_env(BLING_FLEET_ERRORS_PER_10S=3, BLING_RATE_MAX_WAIT_S=1)
    one, other = Deps(config.read_settings()), Deps(config.read_settings())
    assert one.fleet_errors is not None and other.fleet_errors is not None
    if time.time() % 10 > 8.5:  # keep the three counts in one 10-s window, so the check below is the cap's alone
        time.sleep(10 - time.time() % 10)

    assert other.fleet_errors.paused_until() == 0.0
    for _ in range(3):
        one.fleet_errors.count_error()
    time.sleep(1.1)  # the other instance trusts its last read for 1 s

    assert other.fleet_errors.paused_until() > time.time()
    with pytest.raises(RetryableError, match="error cap"):
        other.fleet_budget(other.account("loja-a").rate_ledger).acquire()


def test_bling_s_error_answers_are_counted_fleet_wide(bling):
    set_env(BLING_FLEET_ERRORS_PER_10S=250)
    client = account_client()

    with pytest.raises(BlingNotFound):
        client.get("/nfe/999999999")

    deps = current_deps()
    counts = FirestoreErrorCounts(deps.firestore, deps.collection(topology.RATE_STATE))  # what every instance reads
    window = int(time.time() // 10)
    assert sum(counts.get([window - 1, window])) == 1
