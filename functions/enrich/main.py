"""enrich: loads the contacts and products (by SKU) referenced by stored invoices, when missing or stale.

The request runs for the account it names (its Bling client, claims and schema; shared.account_registry resolves
it first). A contact or SKU whose own Bling call keeps failing transiently is retried in a message of its own, and
given up with one ERROR after that message's last delivery attempt (reconcile reports it unresolved): it never
blocks the others of its message (shared.record_failures, ADR 009)."""
import functools
import uuid
from typing import Any

import functions_framework

from shared import enrichment, log, record_failures, topology
from shared.bling.client import count_calls
from shared.deps import Deps
from shared.domain import EntityKind
from shared.enrichment import CONTACT, SKU
from shared.errors import EtlError
from shared.handler import pubsub_handler
from shared.messages import EnrichRequest, PubSubMessage

deps = Deps.from_environment()  # the composition root: once per process (ADR 010)


@functions_framework.cloud_event
@pubsub_handler("enrich", lambda: deps.collection(topology.PARKED))
def on_enrich(message: PubSubMessage) -> None:
    request = EnrichRequest.parse(message.data)
    account = deps.account(deps.accounts.resolve(request.account))
    name, database = account.account_id, account.db
    settings = deps.settings
    # The claims' owner: the message id is the same on every redelivery, so a redelivery after a crash takes
    # over the claims its first delivery left behind.
    owner = message.message_id or uuid.uuid4().hex
    attempts = record_failures.Attempts()
    bling = account.client
    max_age = settings.enrich_max_age_days
    claims = deps.collection(topology.ENRICH_CLAIMS)
    with log.bind(account=name, run_id=request.run_id), count_calls() as calls:
        # The claims end with this block, before anything is republished: a record retried in a message of its own
        # must find no claim of ours in its way.
        with enrichment.claimed(claims, name, CONTACT,
                                enrichment.stale_contacts(database, request.contact_ids, max_age), owner) as contacts, \
                enrichment.claimed(claims, name, SKU, enrichment.skus_to_resolve(database, request.skus, max_age),
                                   owner) as skus:
            found_contacts = sum(bool(attempts.run(functools.partial(enrichment.load_contact, bling, database, c),
                                                   (CONTACT, c)))
                                 for c in contacts)
            products = enrichment.find_products_by_sku(bling, skus, attempts)
            found_products = sum(bool(attempts.run(
                functools.partial(enrichment.load_product, bling, database, s, products.found.get(s)), (SKU, s)))
                                 for s in skus if attempts.settled((SKU, s)) and products.decided(s))

        def republish(groups: list[list[tuple[EntityKind, Any]]]) -> None:
            deps.publish_json(topology.ENRICH.topic, [EnrichRequest(
                request.run_id, tuple(k for kind, k in g if kind == CONTACT),
                tuple(k for kind, k in g if kind == SKU), name).to_json() for g in groups], account=name)

        # skus may hold SKUs of other invoices that filled a lookup (skus_to_resolve): records of this delivery too.
        record_failures.settle(attempts, len(request.contact_ids) + len(set(request.skus) | set(skus)),
                               record_failures.last_attempt(message, topology.ENRICH, database), republish, _give_up)
        log.info("enrichment done", event="enrich_done", contacts_fetched=len(contacts),
                 contacts_found=found_contacts, skus_checked=len(skus), skus_found=found_products,
                 retried=len(attempts.failed), untried=len(attempts.untried), api_calls=calls.requests)


def _give_up(key: tuple[EntityKind, Any], error: EtlError) -> None:
    kind, value = key
    log.error(f"{kind} not loaded after the last delivery attempt: {error}", event="enrich_failed",
              **({"contato_id": value} if kind == CONTACT else {"sku": value}), **error.log_fields())
