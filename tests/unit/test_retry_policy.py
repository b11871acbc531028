"""The retry table and the answer classification, alone (no server)."""
from __future__ import annotations

import pytest

from shared.bling.client import classify, error_from_response
from shared.bling.retry_policy import DEADLINE_S, POLICY, Outcome


@pytest.mark.parametrize("status, body, outcome", [
    (200, {"data": []}, Outcome.OK),
    (200, None, Outcome.INVALID_JSON),  # truncated or not JSON
    (200, [1, 2], Outcome.INVALID_JSON),
    (429, {"error": {"type": "TOO_MANY_REQUESTS", "period": "second", "limit": 3}}, Outcome.RATE_SECOND),
    (429, None, Outcome.RATE_SECOND),
    (429, {"error": {"type": "TOO_MANY_REQUESTS", "period": "day", "limit": 120000}}, Outcome.RATE_DAY),
    (401, {"error": {"type": "invalid_token", "message": "invalid_token"}}, Outcome.INVALID_TOKEN),
    (401, {"error": {"type": "UNAUTHORIZED"}}, Outcome.UNAUTHORIZED),
    (403, {"error": {"type": "insufficient_scope"}}, Outcome.INSUFFICIENT_SCOPE),  # parked, not dropped (ADR 008)
    (403, {"error": {"type": "FORBIDDEN"}}, Outcome.CLIENT_ERROR),
    (400, {"error": {"type": "VALIDATION_ERROR"}}, Outcome.CLIENT_ERROR),
    (404, {"error": {"type": "RESOURCE_NOT_FOUND"}}, Outcome.NOT_FOUND),
    (500, None, Outcome.SERVER_ERROR),
    (503, None, Outcome.SERVER_ERROR),
])
def test_answers_fall_in_the_expected_row(status, body, outcome):
    assert classify(status, body) is outcome


def test_retried_rows_back_off_within_their_bounds_and_the_rest_are_single_attempts():
    for outcome in (Outcome.RATE_DAY, Outcome.UNAUTHORIZED, Outcome.INSUFFICIENT_SCOPE, Outcome.NOT_FOUND,
                    Outcome.CLIENT_ERROR):
        assert POLICY[outcome].max_attempts == 1
    rate = POLICY[Outcome.RATE_SECOND]
    waits = [rate.wait(n) for n in range(1, rate.max_attempts)]
    assert all(w >= 1.0 for w in waits) and waits[-1] >= waits[0] and max(waits) <= rate.wait_max_s
    transient = POLICY[Outcome.SERVER_ERROR]
    worst = sum(transient.wait_max_s if n > 4 else min(transient.wait_max_s, transient.wait_min_s * 2 ** (n - 1) * 1.5)
                for n in range(1, transient.max_attempts))
    assert worst < DEADLINE_S < 60


def test_blings_error_body_is_kept():
    error = error_from_response(400, {"error": {"type": "VALIDATION_ERROR", "message": "m", "description": "d",
                                                "fields": [{"code": 49, "element": "parcelas"}]}}, "/nfe")
    assert (error.error_type, error.error_message, error.description) == ("VALIDATION_ERROR", "m", "d")
    assert error.fields == [{"code": 49, "element": "parcelas"}]
    assert error_from_response(502, None, "/nfe").description == "non-JSON body"
