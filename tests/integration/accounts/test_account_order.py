"""Ordering keys per account (shared.account_order, ADR 014), against the emulators, the sandbox and PostgreSQL:
while two or more accounts are active, every message the functions publish for an account carries its id as the
ordering key (so Pub/Sub pushes one message of the account at a time: tests/integration/stack/test_push_relay.py),
and so does the work released from parking or replayed from the dead letters; with one active account none does;
and a failed keyed publish does not stop the key for the next delivery."""
from __future__ import annotations

import pytest
from google.api_core import exceptions

from local.stack import create_topology
from shared import parking, pubsub, topology
from shared.account_registry import AccountStatus
from shared.messages import PubSubMessage
from shared.ops import replay_dead_letters
from tests.conftest import PubSubCapture
from tests.integration.accounts.test_accounts_pipeline import JANUARY, A, B, two_companies  # the fixture
from tests.integration.data.pipeline_driver import envelope, handler
from tests.integration.process_deps import current_deps


def _keys_of_a_month(pubsub_topology, account: str) -> dict[str, set[str]]:
    """Run the scheduler, the lister and one detail batch of `account`'s January in-process: the ordering keys and
    attributes each published on the next function's topic."""
    handler("scheduler")(envelope({"month": JANUARY, "account": account}))
    windows = pubsub_topology.pull(topology.WINDOWS.topic)
    handler("lister")(envelope(windows[0]["data"]))
    batches = pubsub_topology.pull(topology.NFE.topic)
    handler("detail")(envelope(batches[0]["data"]))
    enrich = pubsub_topology.pull(topology.ENRICH.topic)
    published = {"windows": windows, "batches": batches, "enrich": enrich}
    assert all(published.values())
    for messages in published.values():
        assert {m["attributes"]["account"] for m in messages} == {account}
    return {name: {m["ordering_key"] for m in messages} for name, messages in published.items()}


def test_with_two_active_accounts_every_message_of_an_account_carries_it_as_ordering_key(
        two_companies, postgres, pubsub_topology):
    assert current_deps().accounts.active(fresh=True) == [A, B]
    assert _keys_of_a_month(pubsub_topology, B) == {"windows": {B}, "batches": {B}, "enrich": {B}}


def test_with_one_active_account_no_message_is_keyed(two_companies, postgres, pubsub_topology):
    deps = current_deps()
    deps.accounts.set_status(B, AccountStatus.PAUSED, "the test")
    assert deps.accounts.active(fresh=True) == [A]
    assert _keys_of_a_month(pubsub_topology, A) == {"windows": {""}, "batches": {""}, "enrich": {""}}


def test_a_failed_keyed_publish_does_not_stop_the_key_for_the_next_delivery(pubsub_env, gcp_project):
    with pubsub_env.client_env():
        publisher = pubsub.new_publisher()
    topic = "account-order-probe"
    with pytest.raises(exceptions.NotFound):  # the topic does not exist yet: this publish fails
        pubsub.publish_with(publisher, gcp_project, topic, [b'{"k":1}'], ordering_key=A, account=A)
    capture = PubSubCapture(pubsub_env, gcp_project)
    capture.add_topic(topic)
    # The redelivery's publish, in the same instance (the same client), with the same key.
    pubsub.publish_with(publisher, gcp_project, topic, [b'{"k":2}'], ordering_key=A, account=A)
    assert [(m["data"], m["ordering_key"]) for m in capture.pull(topic)] == [({"k": 2}, A)]


def test_parked_work_and_replayed_dead_letters_go_back_with_their_accounts_key(two_companies, pubsub_topology):
    deps = current_deps()
    batch = b'{"run_id":"r1","window":"2026-01","notes":[[1,"2026-01-02"]],"account":"loja-b"}'
    parking.park(deps.collection(topology.PARKED), topology.NFE.topic,
                 PubSubMessage(data=batch, attributes={"account": B}, message_id="parked-1"),
                 "DailyLimitReached", account=B)
    assert parking.release_all(deps, B) == 1
    create_topology(pubsub_topology.emulator, {}, project=pubsub_topology.project)  # the dead-letter holds
    pubsub.publish_with(deps.publisher, deps.settings.project_id, topology.NFE.dead_letter_topic, [batch],
                        account=B)
    assert replay_dead_letters.replay(deps, topology.NFE, 10, dry_run=False, pull_timeout_s=2) == 1
    released = pubsub_topology.pull(topology.NFE.topic)
    assert [(m["data"]["account"], m["ordering_key"]) for m in released] == [(B, B), (B, B)]
