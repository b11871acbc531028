"""The seam the kill and restart scenarios found, pinned in-process: an instance that dies after storing an
invoice but before publishing its enrich message must not lose that invoice's contact and SKUs when Pub/Sub
delivers the batch again (the invoice is then "unchanged" and is not fetched again)."""
from __future__ import annotations

import pytest

from shared.deps import Deps
from tests.integration.data.pipeline_driver import envelope, handler
from tests.integration.process_deps import authorize


def test_a_batch_redelivered_after_its_enrich_publish_was_lost_still_enriches(
        sandbox, db_env, firestore_env, pubsub_topology, monkeypatch):
    monkeypatch.setenv("BLING_RATE_BUDGET_PER_S", "28")
    server = sandbox("small", rate_per_s=30.0)
    authorize(server.issue_tokens())
    truth = server.truth()
    nfe_id = min(i for i, n in truth["nfe"].items() if n["tipo"] == 1 and n["contato"]["id"] and n["itens"])
    note = truth["nfe"][nfe_id]
    batch = envelope({"run_id": "r", "window": "2026-01-01..2026-01-31",
                      "notes": [{"id": nfe_id, "situacao": note["situacao"]}]}, "batch-1")

    real_publish = Deps.publish_json

    def killed(deps, topic, payloads, **kwargs):
        raise ConnectionError("instance killed before the enrich message went out")

    monkeypatch.setattr(Deps, "publish_json", killed)
    with pytest.raises(ConnectionError):
        handler("detail")(batch)
    monkeypatch.setattr(Deps, "publish_json", real_publish)

    handler("detail")(batch)  # the redelivery: the invoice is stored already

    enrich = pubsub_topology.pull_data("bling-enrich")
    assert enrich, "the redelivered batch asked for no enrichment at all"
    assert note["contato"]["id"] in enrich[0]["contact_ids"]
    assert {it["codigo"] for it in note["itens"] if it.get("codigo")} <= set(enrich[0]["skus"])
