"""Listing the NF-e of one window from GET /nfe, page by page, with a checkpoint per page.

Two passes per window, because Bling leaves cancelled invoices out of a listing that does not send `situacao`:
one without it, one with `situacao=2`. Both send `tipo=1` (outgoing only) and datetime bounds
`YYYY-MM-DD 00:00:00` … `YYYY-MM-DD 23:59:59`, never bare dates.

Pages are read until an empty page. Bling gives no totals, and pages can repeat items of the previous page or
carry more than `limite` items, so "fewer than limite" never ends a pass; ids are de-duplicated. When Bling
serves the very same page again and again (what it does when it ignores `pagina`), completeness cannot be proved:
the window fails loudly at once instead of paging to the cap; a page that merely overlaps the previous one does
not end anything. A page cap guards against endless paging; reaching it also fails the window loudly instead of
silently truncating it.

Checkpoint rule (Singer's bookmark rule): the checkpoint moves to page N+1 only after page N's ids are recorded
and published, so a redelivered window resumes at the first page whose ids may not have gone out.
"""
from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable, Iterable
from typing import Any

from shared import firestore_client, log, topology
from shared.bling.client import get_client
from shared.bling.errors import BlingPermanentError
from shared.domain import MAX_SITUACAO, SITUACAO_CANCELADA, is_positive_int
from shared.errors import PermanentError
from shared.messages import NoteRef, Window

# (name, value of the situacao parameter): None = Bling's default listing, which omits cancelled invoices.
PASSES: tuple[tuple[str, int | None], ...] = (("default", None), ("cancelled", SITUACAO_CANCELADA))
_IDENTICAL_PAGES_TO_STOP = 2


class ListingIncomplete(PermanentError):
    """The page cap was reached, Bling repeats one page, or a page is not a list: the window must not be reported
    as complete. `reason` names what happened (PAGE_CAP, REPEATED_PAGE, INVALID_RESPONSE, or several joined by +)."""

    def __init__(self, reason: str, message: str):
        super().__init__(f"{reason}: {message}")
        self.reason = reason

    def log_fields(self) -> dict[str, Any]:
        return {"listing_failure": self.reason}


@dataclasses.dataclass
class Checkpoint:
    pass_index: int = 0
    next_page: int = 1
    done: bool = False

    def to_doc(self) -> dict[str, Any]:
        now = datetime.datetime.now(tz=datetime.UTC)
        return {"pass_index": self.pass_index, "next_page": self.next_page, "done": self.done, "updated_at": now,
                "expire_at": topology.CHECKPOINTS.expire_at(now)}


class CheckpointStore:
    """Firestore document `<prefix>_checkpoints/<run_id>|<window>`, one per window of a run."""

    def _doc(self, window: Window):
        return firestore_client.collection(topology.CHECKPOINTS).document(f"{window.run_id}|{window.key}")

    def load(self, window: Window) -> Checkpoint:
        snapshot = self._doc(window).get()
        if not snapshot.exists:
            return Checkpoint()
        doc = snapshot.to_dict()
        return Checkpoint(int(doc.get("pass_index", 0)), int(doc.get("next_page", 1)), bool(doc.get("done")))

    def save(self, window: Window, checkpoint: Checkpoint) -> None:
        self._doc(window).set(checkpoint.to_doc())


class MemoryCheckpoints(CheckpointStore):
    """For one-off listings (reconciliation) that must not touch the pipeline's checkpoints."""

    def __init__(self) -> None:
        self._saved: dict[str, Checkpoint] = {}

    def load(self, window: Window) -> Checkpoint:
        return self._saved.get(window.key, Checkpoint())

    def save(self, window: Window, checkpoint: Checkpoint) -> None:
        self._saved[window.key] = checkpoint


@dataclasses.dataclass
class ListingResult:
    pages: int = 0
    notes: int = 0
    already_done: bool = False


def note_refs_from_page(data: Any) -> list[NoteRef]:
    """The ids and situações of a page; items that are not outgoing invoices or make no sense are left out loudly."""
    if not isinstance(data, list):
        raise ListingIncomplete("INVALID_RESPONSE", f"GET /nfe answered without a data list (data is "
                                f"{type(data).__name__})")
    refs = []
    for item in data:
        nfe_id = item.get("id") if isinstance(item, dict) else None
        situacao = item.get("situacao") if isinstance(item, dict) else None
        # Within the range the detail message accepts (messages.NfeBatch), so one odd item is left out here
        # instead of making a whole batch undeliverable.
        if not is_positive_int(nfe_id) or not is_positive_int(situacao, MAX_SITUACAO):
            log.error("GET /nfe returned an item without a valid id/situacao; left out", item=str(item)[:500])
            continue
        if item.get("tipo") not in (1, "1", None):
            continue  # an incoming invoice (tipo 0) never enters the tables
        refs.append(NoteRef(id=nfe_id, situacao=situacao))
    return refs


def fetch_nfe_page(params: list[tuple[str, str]]) -> Any:
    """One page of GET /nfe: the `data` value as Bling sent it (checked by note_refs_from_page)."""
    return get_client().get("/nfe", params).get("data")


def list_params(window: Window, page: int, page_size: int, situacao: int | None) -> list[tuple[str, str]]:
    params = [("pagina", str(page)), ("limite", str(page_size)), ("tipo", "1"),
              ("dataEmissaoInicial", f"{window.start.isoformat()} 00:00:00"),
              ("dataEmissaoFinal", f"{window.end.isoformat()} 23:59:59")]
    if situacao is not None:
        params.append(("situacao", str(situacao)))
    return params


def list_window(window: Window, fetch_page: Callable[[list[tuple[str, str]]], Any],
                publish: Callable[[list[NoteRef]], None], checkpoints: CheckpointStore,
                page_size: int, page_cap: int) -> ListingResult:
    """Page through both passes from the checkpoint on; `publish` records and sends one page's new ids.

    A pass that fails permanently (page cap, a repeated page, garbage) does not stop the other one: the cancelled
    invoices of a window must be seen even when its default listing cannot be completed. The window then fails
    with one error that says what happened to each pass; the checkpoint stays at the first failed pass, so a
    replayed window lists again from there."""
    checkpoint = checkpoints.load(window)
    result = ListingResult()
    if checkpoint.done:
        result.already_done = True
        return result
    seen: dict[int, int] = {}
    reports: list[str] = []
    failures: list[str] = []
    failed_at: Checkpoint | None = None
    for pass_index in range(checkpoint.pass_index, len(PASSES)):
        pass_name = PASSES[pass_index][0]
        first_page = checkpoint.next_page if pass_index == checkpoint.pass_index else 1
        before = result.notes
        try:
            _list_pass(window, pass_index, first_page, fetch_page, publish, checkpoints, page_size, page_cap,
                       seen, result)
        except (BlingPermanentError, ListingIncomplete) as exc:
            log.error(f"{pass_name} listing failed; the other pass still runs: {exc}", event="listing_pass_failed",
                      listing=pass_name)
            reports.append(f"{pass_name} listing: {exc}")
            failures.append(exc.reason if isinstance(exc, ListingIncomplete) else exc.error_type or "ERROR")
            failed_at = failed_at or checkpoints.load(window)
            checkpoints.save(window, Checkpoint(pass_index + 1, 1))
            continue
        reports.append(f"{pass_name} listing: {result.notes - before} NF-e listed")
    if failed_at is not None:
        checkpoints.save(window, failed_at)
        raise ListingIncomplete("+".join(failures), "window not complete; " + "; ".join(reports))
    checkpoints.save(window, Checkpoint(len(PASSES), 1, done=True))
    return result


def _list_pass(window: Window, pass_index: int, page: int, fetch_page: Callable[[list[tuple[str, str]]], Any],
               publish: Callable[[list[NoteRef]], None], checkpoints: CheckpointStore, page_size: int,
               page_cap: int, seen: dict[int, int], result: ListingResult) -> None:
    pass_name, situacao = PASSES[pass_index]
    previous_page: list[int] = []
    identical_pages = 0
    while True:
        if page > page_cap:
            raise ListingIncomplete("PAGE_CAP", f"{pass_name} listing passed {page_cap} pages; raise LIST_PAGE_CAP "
                                    "or use smaller windows")
        data = fetch_page(list_params(window, page, page_size, situacao))
        result.pages += 1
        if data == []:
            break  # the only reliable end of a listing: Bling gives no totals
        refs = note_refs_from_page(data)
        new = [r for r in refs if seen.get(r.id) != r.situacao]
        seen.update((r.id, r.situacao) for r in refs)
        log.debug("page listed", page=page, listing=pass_name, items=len(refs), new=len(new))
        if new:
            publish(new)
            result.notes += len(new)
        checkpoints.save(window, Checkpoint(pass_index, page + 1))
        page_ids = [r.id for r in refs]
        identical_pages = identical_pages + 1 if page_ids and page_ids == previous_page else 0
        previous_page = page_ids
        if identical_pages >= _IDENTICAL_PAGES_TO_STOP:
            raise ListingIncomplete("REPEATED_PAGE", f"{pass_name} listing: Bling served the same page "
                                    f"{identical_pages + 1} times up to page {page}; pagina seems ignored, the "
                                    "window cannot be proved complete")
        page += 1
    checkpoints.save(window, Checkpoint(pass_index + 1, 1))


def batches(items: list[NoteRef], size: int) -> Iterable[list[NoteRef]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]
