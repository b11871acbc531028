"""The detail step's decisions, without a database: whether an invoice is fetched at all, and what writing its
detail over the stored row means (new, changed situação, unchanged/stale)."""
from __future__ import annotations

import datetime

import pytest

from shared.domain import SITUACAO_CANCELADA, NfeOutcome
from shared.messages import NoteRef
from shared.nfe_detail import needs_detail
from shared.nfe_store import write_decision

AUTHORIZED = 5
T0 = datetime.datetime(2026, 1, 1, 12, tzinfo=datetime.UTC)
LATER = T0 + datetime.timedelta(seconds=5)


@pytest.mark.parametrize(("stored", "listed", "fetch"), [
    (None, AUTHORIZED, True),  # new: never stored
    (AUTHORIZED, SITUACAO_CANCELADA, True),  # changed situação: cancelled since
    (1, AUTHORIZED, True),  # changed situação: authorized since
    (AUTHORIZED, AUTHORIZED, False),  # unchanged: no call
])
def test_an_invoice_is_fetched_when_new_or_its_situacao_changed(stored, listed, fetch):
    assert needs_detail(NoteRef(1, listed), stored) is fetch


@pytest.mark.parametrize(("stored", "stored_fetch", "situacao", "fetched_at", "outcome"), [
    (None, None, AUTHORIZED, T0, NfeOutcome.NEW),
    (1, T0, AUTHORIZED, LATER, NfeOutcome.UPDATED),
    (AUTHORIZED, T0, SITUACAO_CANCELADA, LATER, NfeOutcome.CANCELLED),
    (SITUACAO_CANCELADA, T0, SITUACAO_CANCELADA, LATER, NfeOutcome.UPDATED),  # a cancellation seen again
    (AUTHORIZED, LATER, AUTHORIZED, T0, None),  # an older fetch never replaces a newer one
    (SITUACAO_CANCELADA, T0, AUTHORIZED, LATER, None),  # cancellation is final at SEFAZ
    (AUTHORIZED, None, AUTHORIZED, T0, NfeOutcome.UPDATED),  # fetch time unknown: only the cancellation rule
    (AUTHORIZED, T0, AUTHORIZED, None, NfeOutcome.UPDATED),
])
def test_writing_a_detail_over_the_stored_row(stored, stored_fetch, situacao, fetched_at, outcome):
    assert write_decision(stored, stored_fetch, situacao, fetched_at) is outcome
