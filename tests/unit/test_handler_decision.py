"""The handler's ack/nack/park mapping and the per-record failure rules, without a server."""
from __future__ import annotations

import base64
import json

import pytest

from shared import handler, record_failures
from shared.bling.errors import (
    BlingAuthorizationBroken,
    BlingDailyLimit,
    BlingNotFound,
    BlingPermanentError,
    BlingReauthorizationRequired,
    BlingRetryableError,
)
from shared.bling.paging import PagingIncomplete
from shared.errors import (
    AuthorizationBroken,
    BadMessage,
    ConfigurationError,
    DailyLimitReached,
    ReauthorizationRequired,
    RetryableError,
)
from shared.handler import Decision, decide
from shared.listing import ListingIncomplete

DROP, PARK, NACK = Decision.DROP, Decision.PARK, Decision.NACK


@pytest.mark.parametrize(("error", "decision"), [
    (BadMessage("not JSON"), DROP),
    (BlingNotFound(404, "RESOURCE_NOT_FOUND"), DROP),
    (BlingPermanentError(400, "VALIDATION_ERROR"), DROP),
    (ListingIncomplete("PAGE_CAP", "too many pages"), DROP),
    (PagingIncomplete("REPEATED_PAGE", "same page"), DROP),
    (RetryableError("database restarted"), NACK),
    (BlingRetryableError(503, "SERVER_ERROR"), NACK),
    (BlingRetryableError(429, "TOO_MANY_REQUESTS"), NACK),
    (ValueError("a bug"), NACK),
    (DailyLimitReached("quota"), PARK),
    (BlingDailyLimit(429, "TOO_MANY_REQUESTS"), PARK),
    (ReauthorizationRequired("invalid_grant"), PARK),
    (BlingReauthorizationRequired(401, "invalid_grant"), PARK),
    # issue 10: a broken authorization or configuration parks the work until a human fixes it
    (AuthorizationBroken("invalid_client"), PARK),
    (BlingAuthorizationBroken(403, "insufficient_scope"), PARK),
    (ConfigurationError("BLING_TOKEN_KEY missing"), PARK),
])
def test_every_leaf_of_the_error_model_has_one_decision(error, decision):
    assert decide(error) is decision


def envelope(body: object) -> dict[str, object]:
    data = base64.b64encode(json.dumps(body).encode()).decode()
    return {"message": {"data": data, "messageId": "m-1"}, "deliveryAttempt": 1}


def _no_parking() -> None:
    raise AssertionError("nothing here is parked")


def test_the_handler_acknowledges_a_drop_and_raises_a_nack_for_redelivery():
    def refuse(message):
        raise BadMessage("unknown keys")

    def fail(message):
        raise BlingRetryableError(503, "SERVER_ERROR")

    handled = []
    assert handler.pubsub_handler("lister", _no_parking)(refuse)(envelope({"x": 1})) is None
    with pytest.raises(BlingRetryableError):
        handler.pubsub_handler("lister", _no_parking)(fail)(envelope({"x": 1}))
    handler.pubsub_handler("lister", _no_parking)(lambda m: handled.append(json.loads(m.data)))(envelope({"x": 2}))
    assert handled == [{"x": 2}]
    undecodable = {"message": {"data": "%%%"}}
    assert handler.pubsub_handler("lister", _no_parking)(fail)(undecodable) is None  # dropped


# ---------------------------------------------------------------------------------------------------- per record

def transient(status: int = 503) -> BlingRetryableError:
    return BlingRetryableError(status, "SERVER_ERROR", path="/nfe/1")


def failing(error: Exception):
    def work() -> None:
        raise error
    return work


def test_one_record_failing_transiently_is_set_aside_and_retried_alone_while_the_others_are_done():
    attempts, republished, given_up = record_failures.Attempts(), [], []
    assert attempts.run(lambda: "ok", "a") == "ok"
    assert attempts.run(failing(transient()), "b") is None
    assert attempts.run(lambda: "ok", "c") == "ok"
    record_failures.settle(attempts, 3, lambda: pytest.fail("not asked: something answered"), republished.extend,
                           lambda key, error: given_up.append(key))
    assert republished == [["b"]] and given_up == []


def test_a_429_or_the_daily_limit_is_not_one_records_failure_and_fails_the_message():
    for error in (transient(429), BlingDailyLimit(429, "TOO_MANY_REQUESTS")):
        with pytest.raises(type(error)):
            record_failures.Attempts().run(failing(error), "a")


def test_a_single_record_message_is_redelivered_until_its_last_attempt_then_given_up():
    attempts = record_failures.Attempts()
    attempts.run(failing(transient()), "only")
    with pytest.raises(BlingRetryableError):
        record_failures.settle(attempts, 1, lambda: False, lambda groups: None, lambda k, e: None)
    given_up = []
    record_failures.settle(attempts, 1, lambda: True, lambda groups: None, lambda k, e: given_up.append(k))
    assert given_up == ["only"]


def test_after_several_failures_in_a_row_the_rest_is_not_tried_and_nothing_answered_means_redeliver():
    attempts, tried = record_failures.Attempts(), []

    def work(key):
        def run():
            tried.append(key)
            raise transient()
        return run

    for key in "abcdefgh":
        attempts.run(work(key), key)
    assert len(tried) == record_failures.MAX_FAILURES_IN_A_ROW and attempts.untried
    with pytest.raises(BlingRetryableError):
        record_failures.settle(attempts, 8, lambda: False, lambda groups: None, lambda k, e: None)
    republished = []
    record_failures.settle(attempts, 8, lambda: True, republished.extend, lambda k, e: None)
    assert sorted(k for g in republished for k in g) == list("abcdefgh")
    assert all(len(g) == 1 for g in republished), "nothing answered: each record gets its own attempts"
