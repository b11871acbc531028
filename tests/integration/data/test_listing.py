"""The lister's paging loop against the sandbox: overlap and oversize are absorbed; a Bling that ignores `pagina`
fails the window loudly instead of reporting it complete or paging to the cap."""
from __future__ import annotations

import datetime

import pytest

from shared import listing
from shared.messages import Window
from tests.integration.process_deps import account_client, authorize

WINDOW = Window("r", datetime.date(2026, 1, 1), datetime.date(2026, 1, 31))


@pytest.fixture
def client(sandbox, firestore_env, monkeypatch):
    monkeypatch.setenv("BLING_RATE_BUDGET_PER_S", "28")
    server = sandbox("small", rate_per_s=30.0)
    authorize(server.issue_tokens())
    return server


def run(page_size=3, fetch=None):
    pages = listing.WindowListing(WINDOW, fetch or listing.nfe_page_fetcher(account_client()),
                                  listing.MemoryCheckpoints(), page_size, 50)
    published = [note for notes in pages for note in notes]
    return pages.result, published


def expected_ids(server):
    truth = server.truth()
    return {i for i in truth["outgoing_ids"] if truth["nfe"][i]["dataEmissao"].startswith("2026-01")}


def test_both_passes_list_every_outgoing_invoice_once(client):
    _, published = run()
    assert {n.id for n in published} == expected_ids(client)
    assert len(published) == len({n.id for n in published})


def test_overlapping_and_oversized_pages_lose_nothing(client):
    client.set_faults(page_overlap=2, page_oversize=2)
    _, published = run()
    assert {n.id for n in published} == expected_ids(client)


def test_a_bling_that_ignores_pagina_fails_the_window(client):
    def page_one_forever(params):
        return account_client().get("/nfe", [(k, "1" if k == "pagina" else v) for k, v in params]).get("data")

    with pytest.raises(listing.ListingIncomplete, match="REPEATED_PAGE"):
        run(fetch=page_one_forever)


def test_a_default_pass_that_fails_permanently_still_runs_the_cancelled_pass_and_reports_both(client):
    """Issue 10.15: the cancelled invoices of the window are listed (and published) anyway, and the window still
    fails, with an error that names what happened to each pass."""
    def default_pass_broken(params):
        default = all(k != "situacao" for k, _ in params)
        forced = [(k, "1" if k == "pagina" and default else v) for k, v in params]
        return account_client().get("/nfe", forced).get("data")

    published = []
    with pytest.raises(listing.ListingIncomplete) as failure:
        for notes in listing.WindowListing(WINDOW, default_pass_broken, listing.MemoryCheckpoints(), 3, 50):
            published.extend(notes)
    truth = client.truth()
    cancelled = {i for i in truth["cancelled_ids"] if truth["nfe"][i]["dataEmissao"].startswith("2026-01")}
    assert cancelled, "the sandbox month has no cancelled invoice: the test would prove nothing"
    assert cancelled <= {n.id for n in published if n.situacao == 2}
    message = str(failure.value)
    assert "default listing" in message and "REPEATED_PAGE" in message
    assert f"cancelled listing: {len(cancelled)} NF-e listed" in message
