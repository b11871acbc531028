"""python -m shared.ops.parked counts parked messages by reason and topic, against the Firestore emulator."""
from __future__ import annotations

from shared import parking, topology
from shared.messages import PubSubMessage
from shared.ops import parked
from tests.integration.process_deps import current_deps, parked_collection


def _park(topic: str, message_id: str, reason: str) -> None:
    message = PubSubMessage(data=b'{"ids": [1]}', attributes={}, message_id=message_id)
    parking.park(parked_collection(), topic, message, reason)


def test_parked_messages_are_counted_by_reason_and_topic(firestore_env, capsys):
    _park("bling-nfe", "m1", "DailyLimitReached")
    _park("bling-nfe", "m2", "DailyLimitReached")
    _park("bling-windows", "m3", "ReauthorizationRequired")
    _park("bling-nfe", "m1", "DailyLimitReached")  # a redelivery parks once

    assert parked.count_parked(current_deps()) == {("DailyLimitReached", "bling-nfe"): 2,
                                     ("ReauthorizationRequired", "bling-windows"): 1}
    assert parked.main([]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "3 parked message(s)"
    assert "ReauthorizationRequired" in out and "bling-windows" in out
