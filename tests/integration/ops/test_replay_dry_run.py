"""replay_dead_letters --dry-run releases what it showed: the real replay right after it replays every message
(before, the dry run held them for the hold subscription's ack deadline and the replay found none)."""
from __future__ import annotations

from shared import topology
from shared.ops import replay_dead_letters
from tests.integration.process_deps import current_deps

# Each replay ends on an empty pull, which the emulator answers 1 s before the pull's deadline: the command's 10 s
# cost ~9 s per replay here (4 replays, ~36 s); with 1 s it answers at once. Messages present are returned at once
# either way, so what a replay finds does not change.
PULL_S = 1.0


def replay(route, account=None, dry_run=False):
    return replay_dead_letters.replay(current_deps(), route, 1000, dry_run=dry_run, account=account,
                                      pull_timeout_s=PULL_S)


def _nfe_route_with_hold(pubsub_env, gcp_project):
    """bling-nfe and its dead-letter topic, the hold subscription, and a capture subscription on bling-nfe."""
    route = next(r for r in topology.ROUTES if r.topic == "bling-nfe")
    publisher, subscriber = pubsub_env.publisher(), pubsub_env.subscriber()
    for topic in (route.topic, route.dead_letter_topic):
        publisher.create_topic(request={"name": publisher.topic_path(gcp_project, topic)})
    hold = subscriber.subscription_path(gcp_project, route.dead_letter_subscription)
    # A long deadline, as in production (infra/pubsub.tf: 60 s): a held message would stay hidden past the replay.
    subscriber.create_subscription(request={"name": hold, "ack_deadline_seconds": 600,
                                            "topic": publisher.topic_path(gcp_project, route.dead_letter_topic)})
    capture = subscriber.subscription_path(gcp_project, "bling-nfe-capture")
    subscriber.create_subscription(request={"name": capture, "topic": publisher.topic_path(gcp_project, route.topic)})
    return route, publisher, subscriber, capture


def test_replay_right_after_a_dry_run_replays_everything(pubsub_env, gcp_project):
    route, publisher, subscriber, capture = _nfe_route_with_hold(pubsub_env, gcp_project)
    for n in range(3):
        publisher.publish(publisher.topic_path(gcp_project, route.dead_letter_topic), f'{{"ids": [{n}]}}'.encode()
                          ).result(timeout=30)

    assert replay(route, dry_run=True) == 0
    replayed = replay(route)

    assert replayed == 3
    received = subscriber.pull(request={"subscription": capture, "max_messages": 10}, timeout=10).received_messages
    assert sorted(m.message.data for m in received) == [b'{"ids": [0]}', b'{"ids": [1]}', b'{"ids": [2]}']


def test_replay_keeps_each_messages_account_and_account_filters(pubsub_env, firestore_env, gcp_project):
    route, publisher, subscriber, capture = _nfe_route_with_hold(pubsub_env, gcp_project)
    dead_letters = publisher.topic_path(gcp_project, route.dead_letter_topic)
    publisher.publish(dead_letters, b'{"ids": [1]}', account="loja-a").result(timeout=30)
    publisher.publish(dead_letters, b'{"ids": [2]}', account="loja-a").result(timeout=30)
    publisher.publish(dead_letters, b'{"account": "loja-b", "ids": [3]}').result(timeout=30)  # named in the body
    publisher.publish(dead_letters, b'{"ids": [4]}').result(timeout=30)  # from before messages named an account
    for account in ("loja-a", "loja-b"):
        current_deps().accounts.register(account)

    def captured() -> list[tuple[bytes, dict[str, str]]]:
        received = subscriber.pull(request={"subscription": capture, "max_messages": 10}, timeout=10)
        subscriber.acknowledge(request={"subscription": capture,
                                        "ack_ids": [m.ack_id for m in received.received_messages]})
        return sorted((m.message.data, dict(m.message.attributes)) for m in received.received_messages)

    assert replay(route, account="loja-a") == 2
    assert captured() == [(b'{"ids": [1]}', {"account": "loja-a"}), (b'{"ids": [2]}', {"account": "loja-a"})]
    # The other accounts' messages were handed back at once: the next replays find them.
    assert replay(route, account="loja-b") == 1
    assert captured() == [(b'{"account": "loja-b", "ids": [3]}', {})]
    assert replay(route) == 1
    assert captured() == [(b'{"ids": [4]}', {})]
