"""scheduler: turns a daily, month or range request into window messages for the lister.

A daily request fans out to every active account (one run each: its own run_id, its etl_run row in its own
schema); a month or range request runs for the account it names, or the only active one (shared.account_registry).
Bad input (not JSON, unknown keys, `2021-13`, end before start, a 20-year range, an account that is not served)
is logged once as ERROR with the input and acknowledged: nothing is published and nothing is stored.
"""
import functions_framework

from shared import audit, log, parking, topology
from shared.deps import Deps
from shared.domain import RunKind
from shared.handler import pubsub_handler
from shared.messages import PubSubMessage
from shared.schedule import ScheduleRequest, parse_schedule_request, run_id_for, split_into_windows

deps = Deps.from_environment()  # the composition root: once per process (ADR 010)


@functions_framework.cloud_event
@pubsub_handler("scheduler", lambda: deps.collection(topology.PARKED))
def on_schedule(message: PubSubMessage) -> None:
    request = parse_schedule_request(message.data, deps.settings)
    if request.kind is RunKind.DAILY:
        # Work parked yesterday because Bling's daily quota was spent goes out again with today's run.
        parking.release_all(deps)
        if request.account is None:
            accounts = deps.accounts.active(fresh=True)
            if not accounts:
                log.warning("daily run: no account is active, nothing to run", event="run_planned_none")
            for account_id in accounts:
                _plan(request, message, account_id)
            return
    _plan(request, message, deps.accounts.resolve(request.account))


def _plan(request: ScheduleRequest, message: PubSubMessage, account_id: str) -> None:
    """One run of the request for one account: its audit rows in its schema, its windows published."""
    account = deps.account(account_id)
    run_id = run_id_for(request, message.message_id, account_id)
    windows = split_into_windows(request, run_id, account_id)
    with log.bind(account=account_id, run_id=run_id):
        audit.record_run(account.db, run_id, request.kind, request.body, request.start, request.end, windows)
        deps.publish_json(topology.WINDOWS.topic, (w.to_json() for w in windows), account=account_id)
        log.info(f"{request.kind} run planned: {len(windows)} window(s) from {request.start} to {request.end}",
                 event="run_planned", kind=request.kind, windows=[w.key for w in windows])
