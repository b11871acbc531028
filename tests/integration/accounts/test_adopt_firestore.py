"""The Firestore half of the upgrade path (shared.account_upgrade): a single-account install's token document,
checkpoints and parked work become the first account's, and the pipeline resumes where the old code stopped."""
from __future__ import annotations

import datetime
import json

import pytest

from local.stack.base import DEFAULT_ACCOUNT
from shared import audit, listing, nfe_detail, parking, topology
from shared.account_registry import AccountStatus
from shared.account_upgrade import AdoptionRefused, adopt_firestore
from shared.bling import token_store
from shared.messages import NfeBatch, PubSubMessage, Window
from tests.integration.data.pipeline_driver import Pipeline, rows
from tests.integration.process_deps import account_db, current_deps, parked_collection, token_document

# What the old scheduler published: no account anywhere.
LEGACY_WINDOW = Window("month-2026-01-01-legacy0001", datetime.date(2026, 1, 1), datetime.date(2026, 1, 31))
PAGE_SIZE = 3


@pytest.fixture
def bling(sandbox, db_env, firestore_env, pubsub_topology, monkeypatch):
    monkeypatch.setenv("BLING_RATE_BUDGET_PER_S", "28")
    monkeypatch.setenv("LIST_PAGE_SIZE", str(PAGE_SIZE))
    return sandbox("small", rate_per_s=30.0)


def legacy_install(server) -> dict:
    """What a single-account deployment left behind mid-window (its database half already adopted into the
    account's schema, as `accounts_db adopt` leaves it): its pair in <prefix>_oauth/bling, the first page of
    January's default pass listed and its invoices stored, the checkpoint `<run_id>|<window>` at page 2, and the
    window message parked (its daily quota ran out). Returns the pair, the stored ids and what a full listing costs."""
    deps = current_deps()
    pair = server.issue_tokens()
    legacy = deps.account(token_store.LEGACY_DOC_ID)  # "bling" is also a slug: the legacy document's parts
    legacy.token_store.store_authorization(pair)
    full = listing.WindowListing(LEGACY_WINDOW, listing.nfe_page_fetcher(legacy.client),
                                 listing.MemoryCheckpoints(), PAGE_SIZE, 50)
    assert sum(len(notes) for notes in full) > PAGE_SIZE  # more than one page: there is something to resume
    list_calls = server.stats()["requests_by_kind"]["nfe_list"]

    database = account_db()
    audit.record_run(database, LEGACY_WINDOW.run_id, "month", {"month": "2026-01"}, LEGACY_WINDOW.start,
                     LEGACY_WINDOW.end, [LEGACY_WINDOW])
    first_page = listing.note_refs_from_page(listing.nfe_page_fetcher(legacy.client)(
        listing.list_params(LEGACY_WINDOW, 1, PAGE_SIZE, None)))
    audit.record_listed(database, LEGACY_WINDOW, first_page)
    nfe_detail.process_batch(legacy.client, database, NfeBatch(LEGACY_WINDOW.run_id, LEGACY_WINDOW.key,
                                                                tuple(first_page)), deps.settings)
    deps.collection(topology.CHECKPOINTS).document(f"{LEGACY_WINDOW.run_id}|{LEGACY_WINDOW.key}").set(
        listing.Checkpoint(0, 2).to_doc())
    parking.park(parked_collection(), topology.WINDOWS.topic,
                 PubSubMessage(json.dumps(LEGACY_WINDOW.to_json()).encode(), {}, "legacy-window-message"),
                 "DailyLimitReached")
    server.reset_stats()
    return {"pair": pair, "stored": {n.id for n in first_page}, "list_calls": list_calls}


def test_the_adopted_install_resumes_its_window_without_relisting_or_reloading(bling, postgres, pubsub_topology):
    before = legacy_install(bling)
    deps = current_deps()

    adoption = adopt_firestore(deps, DEFAULT_ACCOUNT)

    assert (adoption.token, adoption.checkpoints, adoption.parked, adoption.status) == ("moved", 1, 1, "active")
    oauth = deps.collection(topology.OAUTH)
    assert not oauth.document(token_store.LEGACY_DOC_ID).get().exists
    moved = token_document().get().to_dict()
    assert token_store.decrypted_tokens(moved, deps.settings.bling_token_key, deps.settings.firestore_prefix,
                                        DEFAULT_ACCOUNT) == {k: before["pair"][k] for k in ("access_token",
                                                                                             "refresh_token")}
    assert moved["access_token"] != before["pair"]["access_token"]  # still encrypted, for its new path
    assert deps.accounts.get(DEFAULT_ACCOUNT, fresh=True).status is AccountStatus.ACTIVE
    (parked,) = [s.to_dict() for s in parked_collection().stream()]
    assert parked["account"] == DEFAULT_ACCOUNT and json.loads(parked["data"])["account"] == DEFAULT_ACCOUNT

    parking.release_all(deps)  # what the next daily run (or a new authorization) does
    Pipeline(pubsub_topology).drain()

    truth = bling.truth()
    january = {i for i in truth["outgoing_ids"] if truth["nfe"][i]["dataEmissao"].startswith("2026-01")}
    stats = bling.stats()["requests_by_kind"]
    assert stats["nfe_list"] == before["list_calls"] - 1  # page 1 of the default pass is not listed again
    assert stats.get("nfe_detail", 0) == len(january - before["stored"])  # the stored invoices are not reloaded
    assert {r[0] for r in rows(postgres, "SELECT id FROM nfe")} == january
    assert rows(postgres, "SELECT status FROM etl_window WHERE run_id = %s", (LEGACY_WINDOW.run_id,)) == [("listed",)]
    assert {r["account"] for r in bling.app.request_log()} == {"default"}  # every call carried the moved token

    again = adopt_firestore(deps, DEFAULT_ACCOUNT)
    assert (again.token, again.checkpoints, again.parked, again.moved_anything) == ("already moved", 0, 0, False)


def test_adoption_never_overwrites_another_authorization_of_the_account(bling):
    deps = current_deps()
    deps.account(token_store.LEGACY_DOC_ID).token_store.store_authorization(bling.issue_tokens())
    deps.account(DEFAULT_ACCOUNT).token_store.store_authorization(bling.issue_tokens())  # a different pair

    with pytest.raises(AdoptionRefused, match="another authorization"):
        adopt_firestore(deps, DEFAULT_ACCOUNT)

    assert deps.collection(topology.OAUTH).document(token_store.LEGACY_DOC_ID).get().exists  # left as it was


def test_an_account_named_like_the_legacy_document_keeps_its_pair(bling):
    deps = current_deps()
    pair = bling.issue_tokens()
    deps.account(token_store.LEGACY_DOC_ID).token_store.store_authorization(pair)

    adoption = adopt_firestore(deps, token_store.LEGACY_DOC_ID)

    assert (adoption.token, adoption.status) == ("already moved", "active")
    assert deps.account(token_store.LEGACY_DOC_ID).token_store.get_valid_access_token() == pair["access_token"]
