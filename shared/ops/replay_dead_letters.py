"""Re-publish dead letters to the topic they came from, after the cause is fixed.

    python -m shared.ops.replay_dead_letters --topic bling-nfe [--max 1000] [--dry-run] [--account lojas-stilli]
    python -m shared.ops.replay_dead_letters --all

Dead letters wait in the pull subscription `<topic>-dead-letter-hold`. Each one is published again to `<topic>`
with its data and attributes (minus Pub/Sub's CloudPubSubDeadLetter* bookkeeping), and acknowledged only after
the publish is confirmed, so a crash in between replays a message twice (harmless: every function is idempotent)
rather than losing it. Works against the emulator (PUBSUB_EMULATOR_HOST) and production alike.

A replayed message keeps its account (its data and its `account` attribute are published unchanged). `--account`
replays only that account's messages (a message that names none counts as the deployment's only account's); the
others stay in the hold subscription, handed back at the end of the run.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from shared import log, topology
from shared.deps import Deps
from shared.ops import account_arg

_DEAD_LETTER_ATTRIBUTE_PREFIX = "CloudPubSubDeadLetter"
# A pull on an empty subscription is answered empty when (nearly) this long has passed, and an empty answer ends
# the replay: the command's run time on an emptied subscription (was 30 s; the emulator answers after 9 s). The
# command keeps it; a test passes less to replay() (the emulator answers an empty pull 1 s before its deadline, so
# 1 s is an empty answer at once, and a pull that finds messages returns them at once whatever the timeout).
PULL_TIMEOUT_S = 10.0


def message_account(data: bytes, attributes: dict[str, str]) -> str:
    """The account a message names (its `account` attribute, else its JSON body's field); "" when none."""
    if attributes.get("account"):
        return attributes["account"]
    try:
        body: Any = json.loads(data)
    except ValueError:
        return ""
    return str(body.get("account") or "") if isinstance(body, dict) else ""


def replay(deps: Deps, route: topology.Route, max_messages: int, dry_run: bool, account: str | None = None,
           pull_timeout_s: float = PULL_TIMEOUT_S) -> int:
    """Replay up to max_messages dead letters of `route` (only `account`'s when given); the number replayed.
    pull_timeout_s: how long each pull may wait for a message (the last, empty one waits about that long)."""
    from google.cloud import pubsub_v1  # type: ignore[attr-defined]

    settings = deps.settings
    subscriber = pubsub_v1.SubscriberClient()
    subscription = subscriber.subscription_path(settings.project_id, route.dead_letter_subscription)
    unnamed_owner = _only_account(deps) if account else ""
    skipped: set[str] = set()  # message ids of other accounts: kept unacknowledged until the end of the run
    skipped_ack_ids: list[str] = []
    replayed = 0
    with subscriber:
        while replayed < max_messages:
            response = subscriber.pull(request={"subscription": subscription,
                                                "max_messages": min(100, max_messages - replayed)},
                                       timeout=pull_timeout_s)
            if not response.received_messages or all(r.message.message_id in skipped
                                                      for r in response.received_messages):
                skipped_ack_ids += [r.ack_id for r in response.received_messages]
                break
            for received in response.received_messages:
                message = received.message
                attributes = {k: v for k, v in message.attributes.items()
                              if not k.startswith(_DEAD_LETTER_ATTRIBUTE_PREFIX)}
                owner = message_account(message.data, attributes) or unnamed_owner
                if account and owner != account:
                    skipped.add(message.message_id)
                    skipped_ack_ids.append(received.ack_id)
                    continue
                log.info("replaying dead letter", topic=route.topic, dead_letter_message_id=message.message_id,
                         data=message.data[:300].decode("utf-8", errors="replace"), dry_run=dry_run,
                         account=owner or None)
                if dry_run:
                    # Hand it back at once (deadline 0): a dry run must not hide the message from the real
                    # replay that follows for the subscription's ack deadline.
                    subscriber.modify_ack_deadline(request={"subscription": subscription, "ack_ids": [received.ack_id],
                                                            "ack_deadline_seconds": 0})
                    continue
                deps.publish(route.topic, [message.data], **attributes)
                subscriber.acknowledge(request={"subscription": subscription, "ack_ids": [received.ack_id]})
                replayed += 1
            if dry_run:
                break
        for start in range(0, len(skipped_ack_ids), 100):  # other accounts' messages: back to the hold at once
            subscriber.modify_ack_deadline(request={"subscription": subscription,
                                                    "ack_ids": skipped_ack_ids[start:start + 100],
                                                    "ack_deadline_seconds": 0})
    return replayed


def _only_account(deps: Deps) -> str:
    """The account a message that names none belongs to: the only registered one ("" with none or several)."""
    registered = list(deps.accounts.all(fresh=True))
    return registered[0] if len(registered) == 1 else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--topic", choices=[r.topic for r in topology.ROUTES])
    target.add_argument("--all", action="store_true")
    parser.add_argument("--max", type=int, default=10_000)
    parser.add_argument("--dry-run", action="store_true",
                        help="show what would be replayed (up to 100); acknowledge nothing and release them at once")
    parser.add_argument("--account", type=account_arg, help="only this account's messages (default: every one)")
    args = parser.parse_args(argv)
    routes = topology.ROUTES if args.all else [r for r in topology.ROUTES if r.topic == args.topic]
    deps = Deps.from_environment()  # the composition root of this command
    with log.bind(function="replay_dead_letters"):
        for route in routes:
            count = replay(deps, route, args.max, args.dry_run, args.account)
            log.info(f"{count} dead letter(s) replayed to {route.topic}", topic=route.topic, replayed=count,
                     account=args.account)
            print(f"{route.topic}: {count} replayed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
