"""The scheduler's parser: which messages it accepts, how it cuts windows, and what it refuses (with a reason)."""
import datetime
import itertools

import pytest

from shared.config import read_settings
from shared.errors import BadMessage
from shared.schedule import parse_schedule_request, run_id_for, split_into_windows

TODAY = datetime.date(2026, 3, 15)
D = datetime.date


def parse(text: str):
    return parse_schedule_request(text.encode(), read_settings(), today=TODAY)


def test_month_message_is_one_calendar_month():
    request = parse('{"month": "2024-02"}')
    assert (request.kind, request.start, request.end) == ("month", D(2024, 2, 1), D(2024, 2, 29))
    windows = split_into_windows(request, "r1")
    assert [(w.start, w.end) for w in windows] == [(D(2024, 2, 1), D(2024, 2, 29))]


def test_december_ends_on_the_31st():
    assert parse('{"month": "2021-12"}').end == D(2021, 12, 31)


def test_range_is_cut_at_calendar_month_edges_without_gaps_or_overlaps():
    windows = split_into_windows(parse('{"start": "2021-01-15", "end": "2021-04-10"}'), "r1")
    assert [(w.start, w.end) for w in windows] == [
        (D(2021, 1, 15), D(2021, 1, 31)), (D(2021, 2, 1), D(2021, 2, 28)),
        (D(2021, 3, 1), D(2021, 3, 31)), (D(2021, 4, 1), D(2021, 4, 10))]
    for before, after in itertools.pairwise(windows):
        assert after.start == before.end + datetime.timedelta(days=1)


def test_a_year_of_backfill_is_twelve_windows_each_under_bling_one_year_limit():
    windows = split_into_windows(parse('{"start": "2021-01-01", "end": "2021-12-31"}'), "r1")
    assert len(windows) == 12
    assert all((w.end - w.start).days < 365 for w in windows)


def test_daily_message_uses_the_configured_lookback(monkeypatch):
    request = parse('{"daily": true}')
    assert (request.kind, request.start, request.end) == ("daily", D(2026, 3, 8), TODAY)
    assert len(split_into_windows(request, "r")) == 1
    assert parse('{"daily": true, "lookback_days": 2}').start == D(2026, 3, 13)


def test_run_id_is_stable_for_a_redelivered_message_and_differs_between_messages():
    request = parse('{"month": "2024-02"}')
    assert run_id_for(request, "m-1") == run_id_for(request, "m-1")
    assert run_id_for(request, "m-1") != run_id_for(request, "m-2")
    assert run_id_for(request, "m-1").startswith("month-2024-02-01-")


@pytest.mark.parametrize("text, reason", [
    ("", "empty"),
    ("not json", "not JSON"),
    ("[1, 2]", "JSON object"),
    ('"2021-03"', "JSON object"),
    ('{"month": "2021-13"}', "month must be YYYY-MM"),
    ('{"month": "2021-00"}', "month must be YYYY-MM"),
    ('{"month": 202103}', "month must be YYYY-MM"),
    ('{"month": "2021-3"}', "month must be YYYY-MM"),
    ('{"month": "2021-03", "extra": 1}', "only the key 'month'"),
    ('{"start": "2021-05-01", "end": "2021-04-01"}', "before start"),
    ('{"start": "2021-02-30", "end": "2021-03-01"}', "not a valid date"),
    ('{"start": 20210101, "end": "2021-03-01"}', "date string"),
    ('{"start": "2000-01-01", "end": "2020-01-01"}', "before 2006"),
    ('{"start": "2006-01-01", "end": "2025-12-31"}', "more than"),
    ('{"month": "2027-01"}', "in the future"),
    ('{"start": "2021-01-01"}', "expected"),
    ('{"daily": false}', "daily must be true"),
    ('{"daily": "yes"}', "daily must be true"),
    ('{"daily": true, "lookback_days": -1}', "lookback_days"),
    ('{"daily": true, "lookback_days": 1000}', "lookback_days"),
    ('{"daily": true, "month": "2021-01"}', "unknown keys"),
    ('{"foo": 1}', "expected"),
])
def test_bad_requests_are_refused_with_a_reason(text, reason):
    with pytest.raises(BadMessage, match=reason):
        parse(text)


def test_a_request_may_name_its_account_and_each_account_gets_a_run_of_its_own():
    request = parse('{"month": "2024-02", "account": "loja-a"}')
    assert request.account == "loja-a" and parse('{"month": "2024-02"}').account is None
    daily = parse('{"daily": true, "account": "loja-a"}')
    assert daily.account == "loja-a"
    assert run_id_for(daily, "m-1", "loja-a") != run_id_for(daily, "m-1", "loja-b")
    assert run_id_for(daily, "m-1", "loja-a") == run_id_for(daily, "m-1", "loja-a")  # a redelivery: the same run
    assert {w.account for w in split_into_windows(request, "r", "loja-a")} == {"loja-a"}
    with pytest.raises(BadMessage, match="account"):
        parse('{"month": "2024-02", "account": "Loja A"}')
