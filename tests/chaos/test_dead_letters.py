"""Dead letters through the real processes, on a stack of their own (so that deliveries failing on purpose do not
share an emulator with the other scenarios; the hold-backs once seen there came from the emulator's retry policy,
docs/decisions/005): a poison message stops after the configured attempts and waits in `<topic>-dead-letter-hold`;
after the cause is fixed,
`python -m shared.ops.replay_dead_letters` finishes the work and the database equals the truth."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from local.stack import REPO_ROOT
from shared import topology
from tests.chaos.conftest import Chaos
from tests.chaos.reliability import record
from tests.chaos.test_chaos import ends_equal_to_truth

pytestmark = [pytest.mark.chaos, pytest.mark.slow]


def replay_one_dead_letter(chaos: Chaos, topic: str) -> float:
    """Run the documented replay command for `topic` like an operator; it must replay exactly one message.
    Returns its run time in seconds.

    `--max 1`: without it the command ends only on an empty pull, which the emulator answers after ~9 s; that one
    was the only one is checked instead by the hold subscription being empty afterwards (not acknowledged: a
    second dead letter would stay there for the diagnosis)."""
    route = next(r for r in topology.ROUTES if r.topic == topic)
    started = time.monotonic()
    replay = subprocess.run([sys.executable, "-m", "shared.ops.replay_dead_letters", "--topic", topic, "--max", "1"],
                            env={**os.environ, **chaos.stack.env(), "PYTHONPATH": str(REPO_ROOT)},
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    replay_s = time.monotonic() - started
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert f"{topic}: 1 replayed" in replay.stdout, replay.stdout
    left = chaos.stack.pull(route.dead_letter_subscription, timeout_s=1.0, ack=False)
    assert left == [], f"more than one dead letter was held in {route.dead_letter_subscription}: {left}"
    return replay_s


def test_a_poison_message_is_dead_lettered_after_the_configured_attempts(chaos: Chaos):
    """The database refuses this window's run on every delivery (a constraint the code knows nothing about): the
    lister fails unexpectedly each time, Pub/Sub stops after max_delivery_attempts and the message waits in
    bling-windows-dead-letter-hold; once the cause is gone, the replay command finishes the work."""
    chaos.begin()
    chaos.sql("ALTER TABLE etl_run ADD CONSTRAINT chaos_poison CHECK (run_id <> 'poison-run')")
    try:
        chaos.stack.publish("bling-windows", {"run_id": "poison-run", "start": "2026-01-01", "end": "2026-01-31"})

        def failures() -> list[dict]:
            return [e for e in chaos.lines(["lister"]) if e.get("severity") == "ERROR"
                    and "poison-run" in str(e.get("input", ""))]

        chaos.wait_until(lambda: len(failures()) >= topology.WINDOWS.max_delivery_attempts, 90,
                         "the poison window delivered max_delivery_attempts times")
        time.sleep(6)  # twice the 3 s maximum backoff: a further delivery would show up
        deliveries = len(failures())
        assert deliveries == topology.WINDOWS.max_delivery_attempts, deliveries
    finally:
        chaos.sql("ALTER TABLE etl_run DROP CONSTRAINT IF EXISTS chaos_poison")
    replay_s = replay_one_dead_letter(chaos, "bling-windows")
    waited = chaos.settle(["2026-01"])
    report, _ = ends_equal_to_truth(chaos, ["2026-01"])
    record("poison message",
           fault="a window whose run PostgreSQL refuses on every delivery (CHECK constraint added for the test)",
           outcome=f"delivered exactly {deliveries} times (max_delivery_attempts), then held in "
                   "bling-windows-dead-letter-hold, no further delivery in 6 s; after dropping the constraint "
                   "`replay_dead_letters --topic bling-windows --max 1` replayed 1 and the hold was then empty "
                   f"(command took {replay_s:.0f} s) "
                   f"and DB = truth for 2026-01 ({report.counts['nfe']} NF-e)",
           ok=True, seconds=chaos.elapsed(), deliveries=deliveries, settle_s=round(waited, 1))


def test_dead_letters_replayed_after_postgresql_was_down_longer_than_the_attempts(chaos: Chaos):
    chaos.begin()
    chaos.stack.postgres.stop()
    try:
        # One message for both months (a range): with several messages failing at once the emulator slows its
        # pushes to the endpoint (as Pub/Sub's push backoff does) and the attempts would take minutes.
        chaos.stack.publish("bling-schedule", {"start": "2026-01-01", "end": "2026-02-28"})

        def retried() -> int:
            return len([e for e in chaos.lines(["scheduler"]) if e.get("severity") == "WARNING"
                        and str(e.get("message", "")).startswith("will be redelivered")])

        chaos.wait_until(lambda: retried() >= topology.SCHEDULE.max_delivery_attempts, 90,
                         "every scheduler delivery failing")
        time.sleep(6)  # twice the maximum backoff: a further delivery would show up
        attempts = retried()
        assert attempts == topology.SCHEDULE.max_delivery_attempts, attempts
    finally:
        chaos.stack.postgres.start()
    replay_s = replay_one_dead_letter(chaos, "bling-schedule")
    waited = chaos.settle()
    report, _ = ends_equal_to_truth(chaos)
    record("dead letters replayed after PostgreSQL was down",
           fault="PostgreSQL stopped, a two-month backfill published: every scheduler delivery fails "
                 "(database unavailable)",
           outcome=f"{attempts} failed deliveries, then none: the message was held in "
                   "bling-schedule-dead-letter-hold; PostgreSQL started, `python -m shared.ops.replay_dead_letters "
                   "--topic bling-schedule --max 1` replayed 1, the hold then empty "
                   f"(command took {replay_s:.0f} s); DB = truth "
                   f"({report.counts['nfe']} NF-e), 0 duplicates",
           ok=True, seconds=chaos.elapsed(), settle_s=round(waited, 1))
