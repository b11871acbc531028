"""Issue 13: listing in calendar-year windows (the largest Bling accepts), audited per month.

Without a server: how a request becomes listing windows, how a window becomes its audit months, and how a
year's listed ids are attributed to the month of their emission date, with the checkpoint still per page."""
from __future__ import annotations

import calendar
import datetime
import itertools
from typing import Any

from shared import listing
from shared.config import read_settings
from shared.messages import Window
from shared.schedule import audit_periods, listing_windows, parse_schedule_request, split_into_windows

TODAY = datetime.date(2026, 3, 15)
D = datetime.date


def parse(text: str):
    return parse_schedule_request(text.encode(), read_settings(), today=TODAY)


def _plus_one_year(dt: datetime.datetime) -> datetime.datetime:
    """Bling's rule as the sandbox reads it: a period is refused when its end is after start + 1 year."""
    return dt.replace(year=dt.year + 1, day=min(dt.day, calendar.monthrange(dt.year + 1, dt.month)[1]))


def _bounds(window: Window) -> tuple[datetime.datetime, datetime.datetime]:
    params = dict(listing.list_params(window, 1, 100, None))
    return (datetime.datetime.fromisoformat(params["dataEmissaoInicial"]),
            datetime.datetime.fromisoformat(params["dataEmissaoFinal"]))


def test_a_range_over_years_is_listed_in_calendar_years_with_partial_years_at_the_ends():
    windows = listing_windows(parse('{"start": "2021-03-15", "end": "2026-02-28"}'), "r1")
    assert [(w.start, w.end) for w in windows] == [
        (D(2021, 3, 15), D(2021, 12, 31)), (D(2022, 1, 1), D(2022, 12, 31)), (D(2023, 1, 1), D(2023, 12, 31)),
        (D(2024, 1, 1), D(2024, 12, 31)), (D(2025, 1, 1), D(2025, 12, 31)), (D(2026, 1, 1), D(2026, 2, 28))]
    assert {w.run_id for w in windows} == {"r1"}
    for before, after in itertools.pairwise(windows):
        assert after.start == before.end + datetime.timedelta(days=1), "no gap, no overlap"


def test_every_year_window_is_within_blings_one_year_limit_with_datetime_bounds_leap_years_included():
    for year in (2023, 2024):  # 365 and 366 days
        window, = listing_windows(parse(f'{{"start": "{year}-01-01", "end": "{year}-12-31"}}'), "r")
        start, end = _bounds(window)
        assert (start, end) == (datetime.datetime(year, 1, 1), datetime.datetime(year, 12, 31, 23, 59, 59))
        assert end <= _plus_one_year(start)
        assert Window.parse(f'{{"run_id": "r", "start": "{window.start}", "end": "{window.end}"}}'.encode()) == window


def test_a_month_message_stays_one_month_and_the_daily_window_is_not_cut():
    assert [(w.start, w.end) for w in listing_windows(parse('{"month": "2024-02"}'), "r")] == [
        (D(2024, 2, 1), D(2024, 2, 29))]
    daily = parse_schedule_request(b'{"daily": true, "lookback_days": 7}', read_settings(), today=D(2026, 3, 3))
    assert [(w.start, w.end) for w in listing_windows(daily, "r")] == [(D(2026, 2, 24), D(2026, 3, 3))]


def test_audit_periods_are_the_calendar_months_of_a_window_and_match_the_month_split():
    request = parse('{"start": "2021-03-15", "end": "2022-02-10"}')
    periods = [p for w in listing_windows(request, "r") for p in audit_periods(w)]
    assert periods == split_into_windows(request, "r")
    assert (periods[0].start, periods[0].end) == (D(2021, 3, 15), D(2021, 3, 31))
    assert (periods[-1].start, periods[-1].end) == (D(2022, 2, 1), D(2022, 2, 10))
    assert len(periods) == 12
    month = Window("r", D(2025, 6, 1), D(2025, 6, 30))
    assert audit_periods(month) == [month], "a month window of an earlier run keeps its single row"


YEAR = Window("run", D(2025, 1, 1), D(2025, 12, 31))


def _item(nfe_id: int, emitted: Any, situacao: int = 6) -> dict[str, Any]:
    return {"id": nfe_id, "situacao": situacao, "tipo": 1, "dataEmissao": emitted}


def test_ids_of_a_year_page_are_attributed_to_the_month_of_their_emission_date():
    page = [_item(1, "2025-01-31 23:59:59"), _item(2, "2025-02-01 00:00:00"), _item(3, "2025-12-31 10:00:00"),
            _item(4, "2025-01-05 08:00:00")]
    pages = {(None, 1): page, (2, 1): [_item(5, "2025-02-14 12:00:00", situacao=2)]}
    listed = listing.WindowListing(YEAR, lambda params: pages.get(
        (int(dict(params)["situacao"]) if "situacao" in dict(params) else None, int(dict(params)["pagina"])), []),
        listing.MemoryCheckpoints(), 100, 50)

    grouped = [[(p.key, [n.id for n in group]) for p, group in listed.by_period(notes)] for notes in listed]

    assert grouped == [[("2025-01-01..2025-01-31", [1, 4]), ("2025-02-01..2025-02-28", [2]),
                        ("2025-12-01..2025-12-31", [3])],
                       [("2025-02-01..2025-02-28", [5])]]
    assert listed.result.pages == 4, "one year: two passes of one page and the closing empty page each"


def test_an_id_without_a_readable_emission_date_in_the_window_goes_to_its_first_month_not_lost(capsys):
    page = [_item(1, None), _item(2, "garbage"), _item(3, "2024-12-31 23:00:00"), _item(4, "2025-03-03 09:00:00")]
    listed = listing.WindowListing(YEAR, lambda params: page if dict(params)["pagina"] == "1" else [],
                                   listing.MemoryCheckpoints(), 100, 50)

    first = next(iter(listed))

    assert [(p.key, [n.id for n in g]) for p, g in listed.by_period(first)] == [
        ("2025-01-01..2025-01-31", [1, 2, 3]), ("2025-03-01..2025-03-31", [4])]
    assert capsys.readouterr().out.count('"event": "listing_date_outside"') == 3


def test_a_redelivered_year_window_resumes_at_the_page_after_the_last_one_sent():
    pages = {1: [_item(i, f"2025-{1 + i % 12:02d}-10 10:00:00") for i in range(1, 101)],
             2: [_item(i, "2025-11-10 10:00:00") for i in range(101, 151)]}
    fetched: list[int] = []

    def fetch(params: list[tuple[str, str]]) -> Any:
        query = dict(params)
        if "situacao" in query:
            return []
        fetched.append(int(query["pagina"]))
        return pages.get(int(query["pagina"]), [])

    checkpoints = listing.MemoryCheckpoints()
    first = iter(listing.WindowListing(YEAR, fetch, checkpoints, 100, 50))
    next(first)  # page 1 handed out, then the instance dies before asking for page 2
    next(first)  # page 2 handed out: page 1's checkpoint moved
    fetched.clear()

    resumed = listing.WindowListing(YEAR, fetch, checkpoints, 100, 50)
    ids = [n.id for notes in resumed for n in notes]

    assert fetched[0] == 2 and ids == list(range(101, 151))
