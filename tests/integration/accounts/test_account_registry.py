"""The account registry in the Firestore emulator: lifecycle, and which account a message runs for."""
from __future__ import annotations

import datetime

import pytest

from shared import topology
from shared.account_registry import AccountNotServed, AccountRegistry, AccountStatus, NoAccountConnected
from tests.integration.process_deps import current_deps


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def registry(firestore_env) -> AccountRegistry:
    deps = current_deps()
    return AccountRegistry(deps.firestore, deps.collection(topology.ACCOUNTS), cache_s=0)


def test_a_new_slug_is_pending_until_a_token_is_stored_then_active(registry):
    assert registry.register("lojas-stilli").status is AccountStatus.PENDING
    assert registry.active() == []
    assert registry.mark_authorized("lojas-stilli").status is AccountStatus.ACTIVE
    assert registry.active() == ["lojas-stilli"]
    again = registry.register("lojas-stilli")  # the start page opened again (re-authorization)
    assert again.status is AccountStatus.ACTIVE
    assert again.created_at is not None


def test_an_invalid_slug_is_refused_before_anything_is_written(registry):
    for bad in ("Lojas", "lojas_stilli", "ab", "-lojas", "lojas--stilli", "lojas/../x"):
        with pytest.raises(ValueError):
            registry.register(bad)
    assert registry.all(fresh=True) == {}


def test_pause_drops_its_messages_and_resume_runs_them_again(registry):
    registry.register("acme")
    registry.mark_authorized("acme")
    registry.set_status("acme", AccountStatus.PAUSED, "client asked to stop")
    with pytest.raises(AccountNotServed, match=r"paused.*client asked to stop"):
        registry.resolve("acme")
    # Re-authorizing a paused account does not resume it: the pause was the operator's decision.
    assert registry.mark_authorized("acme").status is AccountStatus.PAUSED
    registry.set_status("acme", AccountStatus.ACTIVE)
    assert registry.resolve("acme") == "acme"


def test_resuming_an_account_never_authorized_is_refused(registry):
    registry.register("acme")
    with pytest.raises(ValueError, match="never authorized"):
        registry.set_status("acme", AccountStatus.ACTIVE)
    with pytest.raises(ValueError, match="not connected"):
        registry.set_status("other", AccountStatus.PAUSED)


def test_a_removed_account_can_be_connected_again_as_pending(registry):
    registry.register("acme")
    registry.mark_authorized("acme")
    registry.set_status("acme", AccountStatus.REMOVED)
    assert registry.active() == []
    assert registry.register("acme").status is AccountStatus.PENDING


def test_which_account_a_message_runs_for(registry):
    with pytest.raises(NoAccountConnected):  # parked: nothing to run it for yet, the operator must connect one
        registry.resolve(None)
    registry.register("alpha")
    registry.mark_authorized("alpha")
    assert registry.resolve(None) == "alpha"  # today's messages, with exactly one account
    registry.register("beta")
    assert registry.resolve(None) == "alpha"  # beta is pending: still one active
    with pytest.raises(AccountNotServed, match="pending"):
        registry.resolve("beta")
    registry.mark_authorized("beta")
    with pytest.raises(AccountNotServed, match="2 accounts are active"):
        registry.resolve(None)
    with pytest.raises(AccountNotServed, match="not connected"):
        registry.resolve("gamma")
    assert registry.resolve("beta") == "beta"


def test_reads_are_cached_but_a_miss_or_an_inactive_hit_is_read_again(firestore_env):
    deps = current_deps()
    clock = Clock()
    writer = AccountRegistry(deps.firestore, deps.collection(topology.ACCOUNTS))
    reader = AccountRegistry(deps.firestore, deps.collection(topology.ACCOUNTS), cache_s=30, clock=clock)
    writer.register("acme")
    assert reader.get("acme").status is AccountStatus.PENDING  # cached from now on
    writer.mark_authorized("acme")  # on another instance
    assert reader.resolve("acme") == "acme"  # an inactive cached record is read again before refusing
    writer.set_status("acme", AccountStatus.PAUSED)
    assert reader.resolve("acme") == "acme"  # within the cache time a pause is not seen yet...
    clock.now = 31
    with pytest.raises(AccountNotServed):  # ...and is after it
        reader.resolve("acme")


def test_a_hand_edited_status_does_not_make_an_account_run(registry, firestore_env):
    deps = current_deps()
    deps.collection(topology.ACCOUNTS).document("acme").set({"status": "ACTIVE!"})
    assert registry.get("acme").status is AccountStatus.PAUSED
    registry.record_daily_run_ok("acme", datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC))
    assert registry.get("acme").last_daily_run_ok_at is not None
