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

Granularity: month windows. A month is the unit a user thinks in for backfills, it keeps windows far below Bling's
one-year limit on period filters, and it costs two short listings (without and with situacao=2) per month,
where day windows would cost at least 2 calls a day — about 730 list calls a year for nothing. Ranges are cut
at calendar-month edges, so the same invoice always falls in the same window of a backfill, and windows never
overlap. The daily window is not cut: the look-back is a few days and Bling accepts it as one period.
The price of month windows is the empty page that ends each of the two passes, paid by sparse months as often as
by busy ones: measured on a history of 2,926 invoices over 62 months, 1.08 list+detail calls per new invoice
(docs/BENCHMARKS.md), where the ideal is 1.0. Short pages cannot end a pass (Bling's pages can overflow and
repeat), so this is the cost of proving each window complete.

Windows are closed ranges of São Paulo calendar days; the lister sends them to Bling as
`YYYY-MM-DD 00:00:00` … `YYYY-MM-DD 23:59:59` (never bare dates, which lose the last day).
"""
from __future__ import annotations

import dataclasses
import datetime
import hashlib
import re
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
    """The windows of the request, for `account` (the one the request resolved to)."""
    if request.kind is RunKind.DAILY:
        return [Window(run_id, request.start, request.end, account)]
    windows = []
    start = request.start
    while start <= request.end:
        end = min(_month_end(start), request.end)
        windows.append(Window(run_id, start, end, account))
        start = end + datetime.timedelta(days=1)
    return windows


def run_id_for(request: ScheduleRequest, message_id: str, account: str | None = None) -> str:
    """Deterministic per Pub/Sub message (and account, for a daily message that fans out): a redelivered message
    continues the same runs instead of starting others. Without an account, the id of before issue 14."""
    seed = f"{message_id}|{request.start}|{request.end}" + (f"|{account}" if account else "")
    digest = hashlib.sha256(seed.encode()).hexdigest()[:10]
    return f"{request.kind}-{request.start.isoformat()}-{digest}"
