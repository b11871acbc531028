"""The whole chain through real processes: the auth function, the four Pub/Sub-driven functions, the emulators,
PostgreSQL and the Bling sandbox (`small` profile). The database must equal the sandbox truth for the two months,
without duplicates, without dead letters, and without a secret in any log line."""
from __future__ import annotations

import pytest

from local import verify

pytestmark = pytest.mark.slow

MONTHS = ("2026-01", "2026-02")
# Settled = no function log line for 3 s (push retries come after 1 s), the database unchanged between two checks
# and every expected row present (verify.wait_for_pipeline).
QUIET_S = 3


@pytest.fixture(scope="module")
def loaded(stack):
    """Authorize through the auth function, publish the two months, wait for the pipeline to settle."""
    status = stack.authorize()
    truth = verify.fetch_truth(stack.sandbox.url)
    for month in MONTHS:
        stack.publish("bling-schedule", {"month": month})
    waited = verify.wait_for_pipeline(stack, truth, MONTHS, quiet_s=QUIET_S, timeout_s=600)
    return {"status": status, "truth": truth, "waited_s": waited, "stats": stack.sandbox.stats()}


def test_authorization_through_auth_function(stack, loaded):
    status = loaded["status"]
    assert status["token_stored"] is True
    assert status["reauth_required"] is False
    assert status.get("expires_at")


def test_database_equals_truth(stack, loaded):
    conn = stack.postgres.connect()
    try:
        report = verify.verify(conn, loaded["truth"], MONTHS)
        assert report.ok, report.summary()
        assert verify.duplicate_report(conn) == []
        expected = verify.expected_from_truth(verify.normalize_truth(loaded["truth"]), MONTHS)
        assert report.counts["nfe"] == len(expected.nfe) > 0
        assert report.counts["nfe_item"] == expected.item_lines
    finally:
        conn.close()


def test_no_dead_letters_and_no_errors(stack, loaded):
    # The pipeline settled long ago: a held message is in its hold subscription already (0.3 s: the chaos checks')
    assert {t: m for t, m in stack.dead_letters(timeout_s=0.3).items() if m} == {}
    errors = [e for e in stack.log_lines() if e.get("severity") in ("ERROR", "CRITICAL")]
    assert errors == []


def test_no_secret_in_logs(stack, loaded):
    text = stack.log_text(include_infra=False)
    assert text, "the functions wrote no logs at all"
    for name, secret in (("client secret", stack.sandbox.client_secret),
                         ("DB password", stack.postgres.password), ("auth admin key", stack.auth_admin_key)):
        assert secret not in text, f"the {name} appears in a function log"


def test_rate_limit_respected(stack, loaded):
    stats = loaded["stats"]
    assert stats["max_requests_in_any_1s"] <= 3, stats
    assert stats["ip_blocked"] is False, stats


def test_republishing_is_idempotent(stack, loaded):
    """The same months again: same database, no duplicate rows, no NF-e detail fetched a second time."""
    conn = stack.postgres.connect()
    try:
        before = verify.db_counts(conn)
    finally:
        conn.close()
    stack.sandbox.reset_stats()
    for month in MONTHS:
        stack.publish("bling-schedule", {"month": month})
    verify.wait_for_pipeline(stack, loaded["truth"], MONTHS, quiet_s=QUIET_S, timeout_s=600)
    conn = stack.postgres.connect()
    try:
        report = verify.verify(conn, verify.fetch_truth(stack.sandbox.url), MONTHS)
        assert report.ok, report.summary()
        assert verify.duplicate_report(conn) == []
        assert verify.db_counts(conn) == before
    finally:
        conn.close()
    stats = stack.sandbox.stats()
    assert stats["requests_by_kind"].get("nfe_list", 0) > 0, "the second run did not list anything"
    assert stats["requests_by_kind"].get("nfe_detail", 0) == 0, stats["requests_by_kind"]
