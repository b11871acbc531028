from __future__ import annotations

import pytest

from shared.messages import NoteRef, Window
from tests.integration.badinput.helpers import snapshot
from tests.integration.data.pipeline_driver import envelope, handler
from tests.integration.process_deps import account_db, authorize

# Bling's 3 req/s scaled ×10 in time (sandbox and budget alike), as in tests/integration/data.
SCALED_RATE, SCALED_BUDGET = 30.0, "28"
SEED_WINDOW = Window("seed-run", __import__("datetime").date(2026, 1, 1), __import__("datetime").date(2026, 1, 31))


@pytest.fixture
def bling(sandbox, db_env, firestore_env, pubsub_topology, monkeypatch):
    """The small sandbox, authorized, with two January invoices (and their contacts and SKUs) already stored,
    so that "nothing stored changed" compares real rows, not two empty databases."""
    monkeypatch.setenv("BLING_RATE_BUDGET_PER_S", SCALED_BUDGET)
    server = sandbox("small", rate_per_s=SCALED_RATE)
    authorize(server.issue_tokens())
    truth = server.truth()
    january = sorted(i for i, n in truth["nfe"].items() if n["tipo"] == 1 and n["dataEmissao"].startswith("2026-01"))
    notes = [NoteRef(id=i, situacao=truth["nfe"][i]["situacao"]) for i in january[:2]]
    from shared import audit

    audit.ensure_window(account_db(), SEED_WINDOW)
    audit.record_listed(account_db(), SEED_WINDOW, notes)
    handler("detail")(envelope({"run_id": SEED_WINDOW.run_id, "window": SEED_WINDOW.key,
                                "notes": [{"id": n.id, "situacao": n.situacao} for n in notes]}))
    for message in pubsub_topology.pull("bling-enrich", timeout_s=2):
        handler("enrich")(envelope(message["data"]))
    server.reset_stats()
    server.seeded_ids = [n.id for n in notes]
    return server


@pytest.fixture
def stored(bling, postgres):
    """A snapshot of every table taken before the bad input; compare with snapshot(postgres) after."""
    before = snapshot(postgres)
    assert before["nfe"], "the fixture stored no invoice"
    return before
