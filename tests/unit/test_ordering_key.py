"""shared.account_order: a message of an account is keyed by it only while two or more accounts are active, and only
on the routes that order by account (ADR 014)."""
from shared import topology
from shared.account_order import ordering_key


def test_with_two_or_more_active_accounts_a_workers_message_is_keyed_by_its_account():
    for route in (topology.WINDOWS, topology.NFE, topology.ENRICH):
        assert ordering_key(route.topic, "lojas-stilli", 2) == "lojas-stilli"
        assert ordering_key(route.topic, "conta-2", 7) == "conta-2"


def test_with_one_active_account_nothing_is_keyed():
    for active in (0, 1):
        assert ordering_key(topology.NFE.topic, "lojas-stilli", active) == ""


def test_the_schedule_dead_letters_and_messages_without_account_are_not_keyed():
    assert ordering_key(topology.SCHEDULE.topic, "lojas-stilli", 3) == ""  # the fan-out is one message per day
    assert ordering_key(topology.NFE.dead_letter_topic, "lojas-stilli", 3) == ""
    assert ordering_key("another-topic", "lojas-stilli", 3) == ""
    assert ordering_key(topology.NFE.topic, None, 3) == ordering_key(topology.NFE.topic, "", 3) == ""


def test_exactly_the_three_worker_routes_order_by_account():
    assert [r.function for r in topology.ROUTES if r.ordered_by_account] == ["lister", "detail", "enrich"]
    assert topology.route_of(topology.NFE.topic) is topology.NFE and topology.route_of("x") is None
