"""Paging without a server: the paginator and the window listing over pages that overlap, overflow, repeat,
never end, or are not lists; and the bookmark rule of the checkpoint."""
from __future__ import annotations

import datetime
from typing import Any

import pytest

from shared import listing
from shared.bling.paging import PagingIncomplete, paginate
from shared.domain import SITUACAO_CANCELADA
from shared.messages import Window

WINDOW = Window("run", datetime.date(2026, 1, 1), datetime.date(2026, 1, 31))


def notes(*ids: int, situacao: int = 6) -> list[dict[str, Any]]:
    return [{"id": i, "situacao": situacao, "tipo": 1} for i in ids]


class Listing:
    """GET /nfe as a dict: (situacao param or None, page) → data; missing pages are empty."""

    def __init__(self, pages: dict[tuple[int | None, int], Any]):
        self.pages = pages
        self.fetched: list[tuple[int | None, int]] = []

    def __call__(self, params: list[tuple[str, str]]) -> Any:
        query = dict(params)
        key = (int(query["situacao"]) if "situacao" in query else None, int(query["pagina"]))
        self.fetched.append(key)
        return self.pages.get(key, [])


def listed(fetch: Listing, cap: int = 50) -> tuple[list[int], listing.WindowListing]:
    pages = listing.WindowListing(WINDOW, fetch, listing.MemoryCheckpoints(), 100, cap)
    return [n.id for batch in pages for n in batch], pages


def test_overlapping_pages_list_every_invoice_once():
    fetch = Listing({(None, 1): notes(1, 2, 3, 4, 5), (None, 2): notes(4, 5, 6, 7, 8), (None, 3): notes(8, 9, 10)})
    ids, pages = listed(fetch)
    assert ids == list(range(1, 11))
    assert pages.result.notes == 10 and pages.result.pages == 4 + 1  # 3 + the empty one, then the cancelled pass


def test_a_page_with_more_than_limite_items_is_read_whole_and_does_not_end_the_pass():
    fetch = Listing({(None, 1): notes(*range(1, 151)), (None, 2): notes(*range(151, 171))})
    ids, _ = listed(fetch)
    assert ids == list(range(1, 171))
    assert (None, 3) in fetch.fetched, "only an empty page ends a pass"


def test_the_cancelled_pass_asks_for_situacao_2_and_a_situacao_change_is_listed_again():
    fetch = Listing({(None, 1): notes(1, 2), (SITUACAO_CANCELADA, 1): notes(2, 3, situacao=SITUACAO_CANCELADA)})
    pages = listing.WindowListing(WINDOW, fetch, listing.MemoryCheckpoints(), 100, 50)
    got = [(n.id, n.situacao) for batch in pages for n in batch]
    assert got == [(1, 6), (2, 6), (2, 2), (3, 2)]


def test_a_page_served_again_and_again_fails_the_window_at_once_not_at_the_cap():
    same = notes(1, 2, 3)
    fetch = Listing({(None, p): same for p in range(1, 51)})
    with pytest.raises(listing.ListingIncomplete, match="REPEATED_PAGE") as failure:
        listed(fetch)
    assert fetch.fetched.count((None, 3)) == 1 and (None, 4) not in fetch.fetched  # 3 identical pages, no more
    assert "cancelled listing: 0 NF-e listed" in str(failure.value)  # the other pass still ran


def test_reaching_the_page_cap_fails_the_window_instead_of_truncating_it():
    fetch = Listing({(None, p): notes(p) for p in range(1, 100)})
    ids: list[int] = []
    with pytest.raises(listing.ListingIncomplete, match="PAGE_CAP"):
        for batch in listing.WindowListing(WINDOW, fetch, listing.MemoryCheckpoints(), 100, 5):
            ids.extend(n.id for n in batch)
    assert ids == [1, 2, 3, 4, 5]
    assert (None, 6) not in fetch.fetched


def test_a_page_that_is_not_a_list_is_said_out_loud():
    with pytest.raises(PagingIncomplete, match="INVALID_RESPONSE"):
        list(paginate(lambda n: {"oops": True}, cap=10))


def test_paginate_ends_at_the_first_empty_page_and_counts_from_first_page():
    served = {3: [{"id": 1}], 4: [{"id": 2}]}
    assert [(p.number, p.items) for p in paginate(lambda n: served.get(n, []), cap=10, first_page=3)] == [
        (3, [{"id": 1}]), (4, [{"id": 2}])]


def test_the_checkpoint_moves_past_a_page_only_when_the_next_one_is_asked_for():
    """Singer's bookmark rule: a delivery that dies while publishing page 1 resumes at page 1."""
    checkpoints = listing.MemoryCheckpoints()
    fetch = Listing({(None, 1): notes(1), (None, 2): notes(2), (None, 3): notes(3)})
    pages = iter(listing.WindowListing(WINDOW, fetch, checkpoints, 100, 50))
    assert [n.id for n in next(pages)] == [1]
    assert (checkpoints.load(WINDOW).pass_index, checkpoints.load(WINDOW).next_page) == (0, 1)
    assert [n.id for n in next(pages)] == [2]
    assert checkpoints.load(WINDOW).next_page == 2
    # The delivery dies here; the redelivery resumes at page 2 (its ids may not have gone out).
    fetch.fetched.clear()
    resumed = [n.id for batch in listing.WindowListing(WINDOW, fetch, checkpoints, 100, 50) for n in batch]
    assert fetch.fetched[0] == (None, 2) and resumed == [2, 3]
    assert checkpoints.load(WINDOW).done


def test_a_window_already_listed_is_not_listed_again():
    checkpoints = listing.MemoryCheckpoints()
    fetch = Listing({(None, 1): notes(1)})
    listed_once = listing.WindowListing(WINDOW, fetch, checkpoints, 100, 50)
    assert [n.id for batch in listed_once for n in batch] == [1]
    fetch.fetched.clear()
    again = listing.WindowListing(WINDOW, fetch, checkpoints, 100, 50)
    assert list(again) == [] and again.result.already_done and fetch.fetched == []


def test_items_that_are_not_outgoing_invoices_or_have_no_valid_id_are_left_out():
    refs = listing.note_refs_from_page([{"id": 1, "situacao": 6, "tipo": 1}, {"id": 2, "situacao": 6, "tipo": 0},
                                        {"id": True, "situacao": 6}, {"id": 3, "situacao": 2 ** 15},
                                        "garbage", {"id": 4, "situacao": 1}])
    assert [(r.id, r.situacao) for r in refs] == [(1, 6), (4, 1)]
