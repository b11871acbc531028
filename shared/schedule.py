"""What the scheduler accepts, and how a request becomes date windows for the lister.

Accepted messages on the schedule topic (anything else is refused with a reason):
- `{"daily": true}` (Cloud Scheduler, 06:00 São Paulo) and optionally `"lookback_days": N`: one window from
  today − N days to today, São Paulo calendar. The look-back re-lists recent days so that an invoice cancelled
  after it was loaded is seen again with its new situação.
- `{"month": "2021-03"}`: a backfill of one calendar month.
- `{"start": "2021-01-01", "end": "2021-12-31"}`: an explicit range of days, inclusive.
Each may name its account, `"account": "<slug>"`. A daily message that names none runs for every active account
(one run each, functions/scheduler); a month or range message that names none runs when exactly one account is
active (shared.account_registry.resolve), so today's commands keep working.

Granularity: the lister lists in the largest windows Bling accepts, the audit reports per month.
Bling refuses a period filter longer than one year (API-NOTES §2.3: "intervalo superior a um ano" → 400; the
sandbox refuses end > start + 1 year). A backfill or range is therefore listed in calendar-year windows
(`listing_windows`): Jan 1 00:00:00 … Dec 31 23:59:59 of one year is less than a year by any reading, partial
years at the range ends. Cutting at calendar-year edges keeps the same invoice in the same window of every
backfill, and windows never overlap. Month windows cost two passes × (pages + the closing empty page) per month
(211 list calls for 731 invoices over 62 months, docs/BENCHMARKS.md), year windows the same per year (27).
The daily window is not cut: the look-back is a few days and Bling accepts it as one period.

The audit still reports per month: each listing window is cut into its calendar months (`audit_periods`), one
etl_window row each, and every listed invoice is attributed to the month of its emission date (shared.listing).
`split_into_windows` gives those month windows of a request (the reconciliation compares month by month).

Windows are closed ranges of São Paulo calendar days; the lister sends them to Bling as
`YYYY-MM-DD 00:00:00` … `YYYY-MM-DD 23:59:59` (never bare dates, which lose the last day).
"""
from __future__ import annotations

import dataclasses
import datetime
import hashlib
import re
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

from shared.config import Settings
from shared.domain import RunKind
from shared.errors import BadMessage
from shared.messages import ACCOUNT_KEY, Window, decode_json_object, parse_account, parse_iso_date

_MONTH_PATTERN = re.compile(r"^(\d{4})-(\d{2})$")
# Bling (and NF-e itself) did not exist before this; an earlier date is a typo, not a backfill.
_EARLIEST = datetime.date(2006, 1, 1)
_MAX_LOOKBACK_DAYS = 60


@dataclasses.dataclass(frozen=True)
class ScheduleRequest:
    kind: RunKind
    start: datetime.date
    end: datetime.date
    body: dict[str, Any]
    account: str | None = None  # None: the message names no account


def today_in(timezone: str) -> datetime.date:
    return datetime.datetime.now(tz=ZoneInfo(timezone)).date()


def parse_schedule_request(data: bytes, settings: Settings, today: datetime.date | None = None) -> ScheduleRequest:
    today = today or today_in(settings.timezone)
    body = decode_json_object(data)
    account = parse_account(body)
    keys = set(body) - {ACCOUNT_KEY}
    if "daily" in keys:
        unknown = keys - {"daily", "lookback_days"}
        if unknown:
            raise BadMessage(f"unknown keys in a daily message: {sorted(unknown)}")
        if body["daily"] is not True:
            raise BadMessage(f"daily must be true, got {body['daily']!r}")
        lookback = body.get("lookback_days", settings.daily_lookback_days)
        if isinstance(lookback, bool) or not isinstance(lookback, int) or not 0 <= lookback <= _MAX_LOOKBACK_DAYS:
            raise BadMessage(f"lookback_days must be an integer from 0 to {_MAX_LOOKBACK_DAYS}, got {lookback!r}")
        return ScheduleRequest(RunKind.DAILY, today - datetime.timedelta(days=lookback), today, body, account)
    if "month" in keys:
        if keys != {"month"}:
            raise BadMessage(f"a month message has only the key 'month', got {sorted(keys)}")
        start, end = _parse_month(body["month"])
        request = ScheduleRequest(RunKind.MONTH, start, end, body, account)
    elif keys == {"start", "end"}:
        request = ScheduleRequest(RunKind.RANGE, parse_iso_date(body["start"], "start"),
                                  parse_iso_date(body["end"], "end"), body, account)
    else:
        raise BadMessage(f"expected {{\"daily\": true}}, {{\"month\": \"YYYY-MM\"}} or "
                         f"{{\"start\": \"YYYY-MM-DD\", \"end\": \"YYYY-MM-DD\"}}, got keys {sorted(keys)}")
    _check_range(request.start, request.end, today, settings.max_range_days)
    return request


def _parse_month(value: Any) -> tuple[datetime.date, datetime.date]:
    match = _MONTH_PATTERN.match(value) if isinstance(value, str) else None
    if not match or not 1 <= int(match.group(2)) <= 12:
        raise BadMessage(f"month must be YYYY-MM with a month from 01 to 12, got {value!r}")
    start = datetime.date(int(match.group(1)), int(match.group(2)), 1)
    return start, _month_end(start)


def _month_end(day: datetime.date) -> datetime.date:
    first_of_next = (day.replace(day=28) + datetime.timedelta(days=4)).replace(day=1)
    return first_of_next - datetime.timedelta(days=1)


def _check_range(start: datetime.date, end: datetime.date, today: datetime.date, max_days: int) -> None:
    if end < start:
        raise BadMessage(f"end {end} is before start {start}")
    if start < _EARLIEST:
        raise BadMessage(f"start {start} is before {_EARLIEST}; NF-e did not exist yet")
    if start > today:
        raise BadMessage(f"start {start} is in the future (today is {today} in São Paulo)")
    if (end - start).days + 1 > max_days:
        raise BadMessage(f"range {start}..{end} spans {(end - start).days + 1} days, more than the "
                         f"{max_days} allowed in one message; send several")


def split_into_windows(request: ScheduleRequest, run_id: str, account: str | None = None) -> list[Window]:
    """The request's month windows for `account` (the daily window whole): the audit's unit, and the
    reconciliation's."""
    if request.kind is RunKind.DAILY:
        return [Window(run_id, request.start, request.end, account)]
    return _cut(Window(run_id, request.start, request.end, account), _month_end)


def listing_windows(request: ScheduleRequest, run_id: str, account: str | None = None) -> list[Window]:
    """The windows the lister pages through for `account`: the daily window whole, anything else cut at
    calendar-year edges."""
    if request.kind is RunKind.DAILY:
        return [Window(run_id, request.start, request.end, account)]
    return _cut(Window(run_id, request.start, request.end, account), _year_end)


def audit_periods(window: Window) -> list[Window]:
    """The window cut at calendar-month edges: one audit row (etl_window) each. A window within one month is
    its own single period, so month windows of earlier runs keep their rows."""
    return _cut(window, _month_end)


def _year_end(day: datetime.date) -> datetime.date:
    return datetime.date(day.year, 12, 31)


def _cut(window: Window, period_end: Callable[[datetime.date], datetime.date]) -> list[Window]:
    windows = []
    start = window.start
    while start <= window.end:
        end = min(period_end(start), window.end)
        windows.append(Window(window.run_id, start, end, window.account))
        start = end + datetime.timedelta(days=1)
    return windows


def run_id_for(request: ScheduleRequest, message_id: str, account: str | None = None) -> str:
    """Deterministic per Pub/Sub message (and account, for a daily message that fans out): a redelivered message
    continues the same runs instead of starting others. Without an account, the id of before issue 14."""
    seed = f"{message_id}|{request.start}|{request.end}" + (f"|{account}" if account else "")
    digest = hashlib.sha256(seed.encode()).hexdigest()[:10]
    return f"{request.kind}-{request.start.isoformat()}-{digest}"
