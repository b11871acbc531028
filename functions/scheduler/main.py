"""scheduler: turns a daily, month or range request into window messages for the lister.

Bad input (not JSON, unknown keys, `2021-13`, end before start, a 20-year range) is logged once as ERROR with
the input and acknowledged: nothing is published and nothing is stored.
"""
import functions_framework

from shared import audit, log, parking, topology
from shared.deps import Deps
from shared.domain import RunKind
from shared.handler import pubsub_handler
from shared.messages import PubSubMessage
from shared.schedule import listing_windows, parse_schedule_request, run_id_for

deps = Deps.from_environment()  # the composition root: once per process (ADR 010)


@functions_framework.cloud_event
@pubsub_handler("scheduler", lambda: deps.collection(topology.PARKED))
def on_schedule(message: PubSubMessage) -> None:
    request = parse_schedule_request(message.data, deps.settings)
    if request.kind is RunKind.DAILY:
        # Work parked yesterday because Bling's daily quota was spent goes out again with today's run.
        parking.release_all(deps)
    run_id = run_id_for(request, message.message_id)
    windows = listing_windows(request, run_id)  # up to a calendar year each; audited per month
    with log.bind(run_id=run_id):
        audit.record_run(run_id, request.kind, request.body, request.start, request.end, windows)
        deps.publish_json(topology.WINDOWS.topic, (w.to_json() for w in windows))
        log.info(f"{request.kind} run planned: {len(windows)} window(s) from {request.start} to {request.end}",
                 event="run_planned", kind=request.kind, windows=[w.key for w in windows])
