"""Issue 10.3: the claim an enrich instance takes on a contact or SKU must not outlive the instance for its own
message. A SIGKILL skips every `finally`: the claims stay in Firestore, live for minutes, and Pub/Sub redelivers the
same message (same message id) seconds later. The end-to-end kill is in tests/chaos/test_chaos.py."""
from __future__ import annotations

import pytest

from local.stack.base import DEFAULT_ACCOUNT
from shared import enrichment, topology
from tests.integration.data.pipeline_driver import envelope, handler, rows
from tests.integration.process_deps import authorize, current_deps


class Killed(BaseException):
    """What a SIGKILL looks like from inside: nothing after it runs (no except Exception, no release)."""


@pytest.fixture
def bling(sandbox, db_env, firestore_env, pubsub_topology, monkeypatch):
    monkeypatch.setenv("BLING_RATE_BUDGET_PER_S", "28")
    server = sandbox("small", rate_per_s=30.0)
    authorize(server.issue_tokens())
    return server


def test_the_redelivery_of_a_killed_enrich_message_takes_its_claims_over_and_does_the_work(
        bling, postgres, monkeypatch):
    truth = bling.truth()
    contacts = sorted({n["contato"]["id"] for n in truth["nfe"].values() if n.get("contato", {}).get("id")})[:3]
    skus = sorted({it["codigo"] for n in truth["nfe"].values() for it in n.get("itens") or [] if it.get("codigo")})[:3]
    message = envelope({"run_id": "r", "contact_ids": contacts, "skus": skus}, "enrich-killed", 1)
    real_load = enrichment.load_contact

    def killed_after_first(client, database, contact_id):
        if contact_id != contacts[0]:
            raise Killed()
        return real_load(client, database, contact_id)

    with monkeypatch.context() as dying:
        dying.setattr(enrichment, "load_contact", killed_after_first)
        # The process is gone: nothing releases.
        dying.setattr(enrichment, "release", lambda claims, account, kind, key: None)
        with pytest.raises(Killed):
            handler("enrich")(message)
    assert {r[0] for r in rows(postgres, "SELECT id FROM contato")} == {contacts[0]}
    bling.reset_stats()

    handler("enrich")(envelope({"run_id": "r", "contact_ids": contacts, "skus": skus}, "enrich-killed", 2))

    assert {r[0] for r in rows(postgres, "SELECT id FROM contato")} == set(contacts)
    assert {r[0] for r in rows(postgres, "SELECT codigo FROM produto_sku")} == set(skus)
    assert bling.stats()["requests_by_kind"].get("contato") == len(contacts) - 1  # the stored one is fresh


def test_a_live_claim_of_another_message_is_not_taken(firestore_env):
    claims = current_deps().collection(topology.ENRICH_CLAIMS)
    assert enrichment.claim(claims, DEFAULT_ACCOUNT, "contato", "7", "message-a") is True
    assert enrichment.claim(claims, DEFAULT_ACCOUNT, "contato", "7", "message-a") is True  # its own redelivery
    assert enrichment.claim(claims, DEFAULT_ACCOUNT, "contato", "7", "message-b") is False  # someone else's live fetch
    enrichment.release(claims, DEFAULT_ACCOUNT, "contato", "7")
    assert enrichment.claim(claims, DEFAULT_ACCOUNT, "contato", "7", "message-b") is True
