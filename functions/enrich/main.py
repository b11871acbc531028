"""enrich: loads the contacts and products (by SKU) referenced by stored invoices, when missing or stale."""
import functions_framework

from shared import enrichment, log
from shared.bling.client import count_calls
from shared.config import get_settings
from shared.handler import pubsub_handler
from shared.messages import EnrichRequest, PubSubMessage


@functions_framework.cloud_event
@pubsub_handler("enrich")
def on_enrich(message: PubSubMessage) -> None:
    request = EnrichRequest.parse(message.data)
    max_age = get_settings().enrich_max_age_days
    with log.bind(run_id=request.run_id), count_calls() as calls:
        contacts = enrichment.contacts_to_fetch(request.contact_ids, max_age)
        skus = enrichment.skus_to_resolve(request.skus, max_age)
        try:
            found_contacts = sum(enrichment.load_contact(c) for c in contacts)
            products = enrichment.find_products_by_sku(skus) if skus else {}
            found_products = sum(enrichment.load_product(s, products.get(s)) for s in skus)
        finally:
            # A claim covers the fetch in flight only: once stored, freshness in the database decides; after a
            # failure, the redelivery of this message must not be blocked by its own first attempt.
            for contact_id in contacts:
                enrichment.release("contato", str(contact_id))
            for sku in skus:
                enrichment.release("sku", sku)
        log.info("enrichment done", event="enrich_done", contacts_fetched=len(contacts),
                 contacts_found=found_contacts, skus_checked=len(skus), skus_found=found_products,
                 api_calls=calls.requests)
