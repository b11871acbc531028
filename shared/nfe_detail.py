"""The detail step: for each listed NF-e, fetch GET /nfe/{id} only when needed and store it.

"Needed" means not stored yet, or stored with another situação than the listing shows (a cancellation, an
authorization). So a re-run of a loaded window costs list calls only. Each invoice is written in its own
transaction together with its audit outcome; a failure of one invoice (404, garbage) is recorded and logged and
does not hold back the others. A transient failure of one invoice's own call (5xx, truncated JSON) does not either:
the invoice is set aside and retried in a message of its own (shared.record_failures, ADR 009). A failure of the
system (429, database down, daily limit, authorization) re-raises so Pub/Sub delivers the batch again — the
invoices already stored are then skipped without calling Bling.
"""
from __future__ import annotations

import dataclasses
import datetime
import functools
from typing import Any

import pg8000.dbapi

from shared import audit, db, log, nfe_store, payment_forms, record_failures
from shared.bling.api import BlingApi
from shared.bling.client import count_calls
from shared.config import Settings
from shared.db import SchemaDb
from shared.domain import NfeOutcome
from shared.errors import EtlError, PermanentError
from shared.messages import EnrichRequest, NfeBatch, NoteRef


class InvalidInvoice(PermanentError):
    """GET /nfe/{id} answered 200 with something that is not an invoice we can store."""


@dataclasses.dataclass
class BatchResult:
    outcomes: dict[int, str] = dataclasses.field(default_factory=dict)
    contact_ids: list[int] = dataclasses.field(default_factory=list)
    skus: list[str] = dataclasses.field(default_factory=list)
    # invoices whose own GET /nfe/{id} failed transiently, or that were not tried: keyed by NoteRef
    attempts: record_failures.Attempts = dataclasses.field(default_factory=record_failures.Attempts)

    def enrich_request(self, run_id: str, account: str | None = None) -> EnrichRequest | None:
        if not self.contact_ids and not self.skus:
            return None
        return EnrichRequest(run_id, tuple(self.contact_ids), tuple(self.skus), account)


def needs_detail(note: NoteRef, stored_situacao: int | None) -> bool:
    """The detail decision: fetch GET /nfe/{id} for an invoice not stored yet or whose situação changed (a
    cancellation, an authorization); one stored with the situação the listing shows is unchanged, no call."""
    return stored_situacao != note.situacao


def process_batch(bling: BlingApi, database: SchemaDb, batch: NfeBatch, settings: Settings) -> BatchResult:
    """The batch against one account: its Bling client and its database (schema)."""
    result = BatchResult()
    with database.transaction() as cur:
        stored = nfe_store.stored_situacoes(cur, [n.id for n in batch.notes])
    for note in batch.notes:
        with log.bind(nfe_id=note.id):
            if not needs_detail(note, stored.get(note.id)):
                _record(database, batch, note.id, NfeOutcome.UNCHANGED, 0)
                result.outcomes[note.id] = NfeOutcome.UNCHANGED
                continue
            outcome = result.attempts.run(
                functools.partial(_load_one, bling, database, batch, note, result, settings), note)
            if outcome is not None:
                result.outcomes[note.id] = outcome
    unchanged = [i for i, outcome in result.outcomes.items() if outcome == NfeOutcome.UNCHANGED]
    if unchanged:
        # An earlier delivery may have stored these and died before its enrich message went out: ask again for
        # their contacts and SKUs (enrich skips what is fresh, so a plain re-run still makes no Bling call).
        _add_stored_references(database, unchanged, result)
    return result


def _add_stored_references(database: SchemaDb, nfe_ids: list[int], result: BatchResult) -> None:
    with database.transaction() as cur:
        cur.execute("SELECT DISTINCT contato_id FROM nfe WHERE id = ANY(%s) AND contato_id IS NOT NULL "
                    "ORDER BY contato_id", (nfe_ids,))
        contacts = [row[0] for row in cur.fetchall()]
        cur.execute("SELECT DISTINCT codigo FROM nfe_item WHERE nfe_id = ANY(%s) AND btrim(codigo) <> '' "
                    "ORDER BY codigo", (nfe_ids,))
        skus = [row[0] for row in cur.fetchall()]
    result.contact_ids.extend(c for c in contacts if c not in result.contact_ids)
    result.skus.extend(s for s in skus if s not in result.skus)


def give_up(database: SchemaDb, batch: NfeBatch, note: NoteRef, error: EtlError) -> None:
    """The last delivery attempt of this invoice's own message failed too: recorded failed, with its error."""
    with log.bind(nfe_id=note.id):
        log.error(f"NF-e not loaded after the last delivery attempt: {error}", event="nfe_failed",
                  **error.log_fields())
        # keep_final: a duplicate delivery that stored it meanwhile keeps its outcome.
        _record(database, batch, note.id, NfeOutcome.FAILED, 0, f"every attempt failed: {error}"[:500], keep_final=True)


def _load_one(bling: BlingApi, database: SchemaDb, batch: NfeBatch, note: NoteRef, result: BatchResult,
              settings: Settings) -> str:
    with count_calls() as calls:
        try:
            fetched_at = datetime.datetime.now(tz=datetime.UTC)
            nfe, raw = _fetch(bling, note)
            if nfe.get("tipo") not in (1, "1"):
                _record(database, batch, note.id, NfeOutcome.SKIPPED, calls.requests,
                        "incoming invoice (tipo 0) is not loaded")
                log.info("incoming invoice skipped", event="nfe_skipped", tipo=nfe.get("tipo"))
                return NfeOutcome.SKIPPED
            forms_calls = payment_forms.ensure_known(bling, database, nfe_store.payment_form_ids(nfe),
                                                     settings.enrich_max_age_days)
            try:
                with database.transaction() as cur:
                    stored = nfe_store.upsert_nfe(cur, nfe, settings.timezone, batch.run_id, raw, fetched_at)
                    if stored.outcome is None:
                        # Another delivery stored a newer fetch meanwhile: it decided this row's outcome.
                        audit.record_outcome(cur, batch.run_id, batch.window, note.id, NfeOutcome.UNCHANGED,
                                             calls.requests, "a newer fetch was stored meanwhile", keep_final=True)
                    else:
                        audit.record_outcome(cur, batch.run_id, batch.window, note.id, stored.outcome,
                                             calls.requests)
            except pg8000.dbapi.DatabaseError as exc:
                if not db.is_data_exception(exc):
                    raise
                # A value PostgreSQL cannot hold (e.g. a serie beyond integer): the same on every delivery, so it
                # fails this invoice, not the whole batch into the dead-letter topic.
                raise InvalidInvoice(f"PostgreSQL refused a value of GET /nfe/{note.id}: {db.server_message(exc)}"
                                     ) from None
        except PermanentError as exc:
            log.error(f"NF-e not loaded: {exc}", event="nfe_failed", **exc.log_fields())
            _record(database, batch, note.id, NfeOutcome.FAILED, calls.requests, str(exc)[:500])
            return NfeOutcome.FAILED
    if stored.outcome is None:
        log.info("older fetch not stored: a newer one is", event="nfe_stale", situacao=nfe.get("situacao"))
        return NfeOutcome.UNCHANGED
    if stored.contato_id and stored.contato_id not in result.contact_ids:
        result.contact_ids.append(stored.contato_id)
    result.skus.extend(s for s in nfe_store.item_skus(nfe) if s not in result.skus)
    log.info(f"NF-e stored ({stored.outcome})", event="nfe_stored", outcome=stored.outcome,
             situacao=nfe.get("situacao"), api_calls=calls.requests, payment_form_calls=forms_calls)
    return stored.outcome


def _fetch(bling: BlingApi, note: NoteRef) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the detail made whole from the listing where Bling left a key out, the detail exactly as Bling sent it).

    Garbage is refused, not guessed; the raw JSON stored is always what Bling sent."""
    raw = bling.get(f"/nfe/{note.id}").get("data")
    if not isinstance(raw, dict):
        raise InvalidInvoice(f"GET /nfe/{note.id} answered without a data object")
    nfe = dict(raw)
    if nfe.get("id") is None:
        nfe["id"] = note.id
    elif nfe.get("id") != note.id:
        raise InvalidInvoice(f"GET /nfe/{note.id} answered with invoice id {nfe.get('id')!r}")
    # The listing asked for tipo=1 and showed this situação: a detail without them is still this invoice.
    if nfe.get("tipo") is None:
        log.warning("NF-e detail without tipo; the listing (tipo=1) says outgoing")
        nfe["tipo"] = 1
    situacao = nfe.get("situacao")
    if isinstance(situacao, bool) or not isinstance(situacao, int):
        log.warning("NF-e detail without an integer situacao; using the listing's", listed=note.situacao,
                    received=str(situacao)[:50])
        nfe["situacao"] = note.situacao
    return nfe, raw


def _record(database: SchemaDb, batch: NfeBatch, nfe_id: int, outcome: str, api_calls: int,
            detail: str | None = None, keep_final: bool = False) -> None:
    with database.transaction() as cur:
        audit.record_outcome(cur, batch.run_id, batch.window, nfe_id, outcome, api_calls, detail, keep_final)
