"""Re-publish dead letters to the topic they came from, after the cause is fixed.

    python -m shared.ops.replay_dead_letters --topic bling-nfe [--max 1000] [--dry-run]
    python -m shared.ops.replay_dead_letters --all

Dead letters wait in the pull subscription `<topic>-dead-letter-hold`. Each one is published again to `<topic>`
with its data and attributes (minus Pub/Sub's CloudPubSubDeadLetter* bookkeeping), and acknowledged only after
the publish is confirmed, so a crash in between replays a message twice (harmless: every function is idempotent)
rather than losing it. Works against the emulator (PUBSUB_EMULATOR_HOST) and production alike.
"""
from __future__ import annotations

import argparse
import sys

from shared import log, topology
from shared.deps import Deps

_DEAD_LETTER_ATTRIBUTE_PREFIX = "CloudPubSubDeadLetter"
# A pull on an empty subscription is answered empty when (nearly) this long has passed, and an empty answer ends
# the replay: the command's run time on an emptied subscription (was 30 s; the emulator answers after 9 s).
_PULL_TIMEOUT_S = 10


def replay(deps: Deps, route: topology.Route, max_messages: int, dry_run: bool) -> int:
    from google.cloud import pubsub_v1  # type: ignore[attr-defined]

    settings = deps.settings
    subscriber = pubsub_v1.SubscriberClient()
    subscription = subscriber.subscription_path(settings.project_id, route.dead_letter_subscription)
    replayed = 0
    with subscriber:
        while replayed < max_messages:
            response = subscriber.pull(request={"subscription": subscription,
                                                "max_messages": min(100, max_messages - replayed)},
                                       timeout=_PULL_TIMEOUT_S)
            if not response.received_messages:
                break
            for received in response.received_messages:
                message = received.message
                attributes = {k: v for k, v in message.attributes.items()
                              if not k.startswith(_DEAD_LETTER_ATTRIBUTE_PREFIX)}
                log.info("replaying dead letter", topic=route.topic, dead_letter_message_id=message.message_id,
                         data=message.data[:300].decode("utf-8", errors="replace"), dry_run=dry_run)
                if dry_run:
                    # Hand it back at once (deadline 0): a dry run must not hide the message from the real
                    # replay that follows for the subscription's ack deadline.
                    subscriber.modify_ack_deadline(request={"subscription": subscription, "ack_ids": [received.ack_id],
                                                            "ack_deadline_seconds": 0})
                    continue
                future = deps.publisher.publish(deps.topic_path(route.topic), message.data, **attributes)
                future.result(timeout=60)
                subscriber.acknowledge(request={"subscription": subscription, "ack_ids": [received.ack_id]})
                replayed += 1
            if dry_run:
                break
    return replayed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--topic", choices=[r.topic for r in topology.ROUTES])
    target.add_argument("--all", action="store_true")
    parser.add_argument("--max", type=int, default=10_000)
    parser.add_argument("--dry-run", action="store_true",
                        help="show what would be replayed (up to 100); acknowledge nothing and release them at once")
    args = parser.parse_args(argv)
    routes = topology.ROUTES if args.all else [r for r in topology.ROUTES if r.topic == args.topic]
    deps = Deps.from_environment()  # the composition root of this command
    with log.bind(function="replay_dead_letters"):
        for route in routes:
            count = replay(deps, route, args.max, args.dry_run)
            log.info(f"{count} dead letter(s) replayed to {route.topic}", topic=route.topic, replayed=count)
            print(f"{route.topic}: {count} replayed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
