"""lister: pages Bling's GET /nfe for one window (up to a calendar year) and publishes the NF-e ids in batches for
the detail function, each batch naming the audit row of its invoices' emission month.

The window runs for the account it names (its Bling client, checkpoints and schema; shared.account_registry
resolves it first). A redelivered window resumes from its Firestore checkpoint; a window already listed in this run
is acknowledged without calling Bling. Reaching the page cap marks the window failed (ERROR) instead of pretending
it is complete. When the last window of a run reaches listed or failed, one INFO line event="run_completed" says so
(exactly once per run, decided in SQL: audit.complete_run_if_done); the missed-run alert counts those lines. A daily
run that completes with no failed window is recorded as the account's last successful daily run.
"""
import datetime

import functions_framework

from shared import audit, listing, log, topology
from shared.bling.client import count_calls
from shared.deps import Account, Deps
from shared.domain import RunKind, WindowStatus
from shared.errors import PermanentError
from shared.handler import pubsub_handler
from shared.messages import NfeBatch, PubSubMessage, Window

deps = Deps.from_environment()  # the composition root: once per process (ADR 010)


@functions_framework.cloud_event
@pubsub_handler("lister", lambda: deps.collection(topology.PARKED))
def on_window(message: PubSubMessage) -> None:
    window = Window.parse(message.data)
    account = deps.account(deps.accounts.resolve(window.account))
    name = account.account_id
    settings = deps.settings
    with log.bind(account=name, run_id=window.run_id, window=window.key):
        database = account.db
        audit.ensure_window(database, window)

        pages = listing.WindowListing(window, listing.nfe_page_fetcher(account.client),
                                      listing.CheckpointStore(deps.collection(topology.CHECKPOINTS), name),
                                      settings.list_page_size, settings.list_page_cap)
        with count_calls() as calls:
            try:
                for notes in pages:  # the checkpoint moves past a page only once its ids are recorded and sent
                    # Each id in the audit row of its emission month; its batch names that row.
                    groups = pages.by_period(notes)
                    for period, group in groups:
                        audit.record_listed(database, period, group)
                    deps.publish_json(topology.NFE.topic, (
                        NfeBatch(window.run_id, period.key, tuple(batch), name).to_json()
                        for period, group in groups for batch in listing.batches(group, settings.ids_per_message)),
                        account=name)
            except PermanentError as exc:  # page cap reached, or Bling answered garbage: the window is not complete
                audit.window_listing_progress(database, window, WindowStatus.FAILED, 0, calls.requests,
                                              calls.throttled, str(exc)[:1000])
                _report_if_run_completed(account, window)
                raise
            except Exception:
                audit.window_listing_progress(database, window, WindowStatus.LISTING, 0, calls.requests,
                                              calls.throttled)
                raise
        result = pages.result
        if result.already_done:
            log.info("window already listed in this run; nothing to do", event="window_skipped")
            # The first delivery may have died between its checkpoint and its status or its report.
            audit.window_listing_progress(database, window, WindowStatus.LISTED, 0, calls.requests, calls.throttled)
            _report_if_run_completed(account, window)
            return
        audit.window_listing_progress(database, window, WindowStatus.LISTED, result.pages, calls.requests,
                                      calls.throttled)
        log.info(f"window listed: {result.notes} NF-e in {result.pages} page(s)", event="window_listed",
                 nfe_listed=result.notes, pages=result.pages, api_calls=calls.requests)
        _report_if_run_completed(account, window)


def _report_if_run_completed(account: Account, window: Window) -> None:
    done = audit.complete_run_if_done(account.db, window.run_id)
    if done:
        log.info(f"run completed: {done.windows} window(s), {done.windows_failed} failed", event="run_completed",
                 run_id=done.run_id, kind=done.kind, windows=done.windows, windows_failed=done.windows_failed)
        if done.kind == RunKind.DAILY and not done.windows_failed:
            deps.accounts.record_daily_run_ok(account.account_id, datetime.datetime.now(tz=datetime.UTC))
