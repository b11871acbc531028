"""detail: fetches and upserts the NF-e of one batch, then asks the enrich function for their contacts and SKUs."""
import functions_framework

from shared import log, nfe_detail, pubsub
from shared.config import get_settings
from shared.handler import pubsub_handler
from shared.messages import NfeBatch, PubSubMessage


@functions_framework.cloud_event
@pubsub_handler("detail")
def on_nfe_batch(message: PubSubMessage) -> None:
    batch = NfeBatch.parse(message.data)
    with log.bind(run_id=batch.run_id, window=batch.window):
        result = nfe_detail.process_batch(batch)
        enrich = result.enrich_request(batch.run_id)
        if enrich:
            pubsub.publish_json(get_settings().topic_enrich, [enrich.to_json()])
        counts = {o: list(result.outcomes.values()).count(o) for o in set(result.outcomes.values())}
        log.info(f"batch of {len(batch.notes)} NF-e done", event="batch_done", outcomes=counts)
