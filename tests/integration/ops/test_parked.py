"""python -m shared.ops.parked counts parked messages per account, reason and topic, against the Firestore emulator."""
from __future__ import annotations

from shared import parking
from shared.messages import PubSubMessage
from shared.ops import parked
from tests.integration.process_deps import current_deps, parked_collection


def _park(topic: str, message_id: str, reason: str, account: str | None = None) -> None:
    attributes = {"account": account} if account else {}
    message = PubSubMessage(data=b'{"ids": [1]}', attributes=attributes, message_id=message_id)
    parking.park(parked_collection(), topic, message, reason)


def test_parked_messages_are_counted_by_reason_and_topic(firestore_env, capsys):
    _park("bling-nfe", "m1", "DailyLimitReached")
    _park("bling-nfe", "m2", "DailyLimitReached")
    _park("bling-windows", "m3", "ReauthorizationRequired")
    _park("bling-nfe", "m1", "DailyLimitReached")  # a redelivery parks once

    assert parked.count_parked(current_deps()) == {("(no account)", "DailyLimitReached", "bling-nfe"): 2,
                                                   ("(no account)", "ReauthorizationRequired", "bling-windows"): 1}
    assert parked.main([]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "3 parked message(s)"
    assert "ReauthorizationRequired" in out and "bling-windows" in out


def test_parked_messages_are_counted_per_account_and_filtered_by_account(firestore_env, capsys):
    registry = current_deps().accounts
    for account in ("loja-a", "loja-b"):
        registry.register(account)
    _park("bling-nfe", "a1", "DailyLimitReached", "loja-a")
    _park("bling-nfe", "a2", "DailyLimitReached", "loja-a")
    _park("bling-nfe", "b1", "DailyLimitReached", "loja-b")
    _park("bling-nfe", "old", "ReauthorizationRequired")  # parked before messages named their account

    assert parked.count_parked(current_deps()) == {("loja-a", "DailyLimitReached", "bling-nfe"): 2,
                                                   ("loja-b", "DailyLimitReached", "bling-nfe"): 1,
                                                   ("(no account)", "ReauthorizationRequired", "bling-nfe"): 1}
    assert parked.main(["--account", "loja-b"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == ["1 parked message(s)", f"  {'loja-b':<22} {'DailyLimitReached':<28} "
                                                      f"{'bling-nfe':<16} 1"]


def test_with_one_account_the_legacy_parked_messages_are_its_own(firestore_env):
    current_deps().accounts.register("loja-a")
    _park("bling-nfe", "old", "ReauthorizationRequired")

    assert parked.count_parked(current_deps(), "loja-a") == {("loja-a", "ReauthorizationRequired", "bling-nfe"): 1}
