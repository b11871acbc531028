"""detail: fetches and upserts the NF-e of one batch, then asks the enrich function for their contacts and SKUs.

The batch runs for the account it names (its Bling client and schema; shared.account_registry resolves it first).
An invoice whose own detail call keeps failing transiently is retried in a message of its own and, after that
message's last delivery attempt, recorded failed in the audit (shared.record_failures, ADR 009)."""
import functions_framework

from shared import log, nfe_detail, record_failures, topology
from shared.deps import Deps
from shared.handler import pubsub_handler
from shared.messages import NfeBatch, NoteRef, PubSubMessage

deps = Deps.from_environment()  # the composition root: once per process (ADR 010)


@functions_framework.cloud_event
@pubsub_handler("detail", lambda: deps.collection(topology.PARKED))
def on_nfe_batch(message: PubSubMessage) -> None:
    batch = NfeBatch.parse(message.data)
    account = deps.account(deps.accounts.resolve(batch.account))
    name, database = account.account_id, account.db
    with log.bind(account=name, run_id=batch.run_id, window=batch.window):
        result = nfe_detail.process_batch(account.client, database, batch, deps.settings)
        enrich = result.enrich_request(batch.run_id, name)
        if enrich:
            deps.publish_json(topology.ENRICH.topic, [enrich.to_json()], account=name)

        def republish(groups: list[list[NoteRef]]) -> None:
            deps.publish_json(topology.NFE.topic, [NfeBatch(batch.run_id, batch.window, tuple(g), name).to_json()
                                                     for g in groups], account=name)

        record_failures.settle(result.attempts, len(batch.notes),
                               record_failures.last_attempt(message, topology.NFE, database), republish,
                               lambda note, error: nfe_detail.give_up(database, batch, note, error))
        counts = {o: list(result.outcomes.values()).count(o) for o in set(result.outcomes.values())}
        log.info(f"batch of {len(batch.notes)} NF-e done", event="batch_done", outcomes=counts,
                 retried=len(result.attempts.failed), untried=len(result.attempts.untried))
