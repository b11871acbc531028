"""Listing the NF-e of one window from GET /nfe, page by page, with a checkpoint per page.

Two passes per window, because Bling leaves cancelled invoices out of a listing that does not send `situacao`:
one without it, one with `situacao=2`. Both send `tipo=1` (outgoing only) and datetime bounds
`YYYY-MM-DD 00:00:00` … `YYYY-MM-DD 23:59:59`, never bare dates.

Pages come from shared.bling.paging (read until an empty page; a repeated page or the page cap fails the pass
loudly); ids are de-duplicated across pages and passes, since pages overlap and overflow `limite`.

Checkpoint rule (Singer's bookmark rule): the checkpoint moves to page N+1 only after page N's ids are recorded
and published, so a redelivered window resumes at the first page whose ids may not have gone out.
"""
from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from shared import log, topology
from shared.bling.api import BlingApi
from shared.bling.errors import BlingPermanentError
from shared.bling.paging import PagingIncomplete, paginate
from shared.domain import MAX_SITUACAO, SITUACAO_CANCELADA, is_positive_int
from shared.messages import NoteRef, Window

# (name, value of the situacao parameter): None = Bling's default listing, which omits cancelled invoices.
PASSES: tuple[tuple[str, int | None], ...] = (("default", None), ("cancelled", SITUACAO_CANCELADA))


class ListingIncomplete(PagingIncomplete):
    """A pass of the window could not be proved complete (its paging failed, or Bling refused it): the window must
    not be reported as complete."""


@dataclasses.dataclass
class Checkpoint:
    pass_index: int = 0
    next_page: int = 1
    done: bool = False

    def to_doc(self) -> dict[str, Any]:
        now = datetime.datetime.now(tz=datetime.UTC)
        return {"pass_index": self.pass_index, "next_page": self.next_page, "done": self.done, "updated_at": now,
                "expire_at": topology.CHECKPOINTS.expire_at(now)}


def checkpoint_id(account: str, run_id: str, window_key: str) -> str:
    """The checkpoint document of one window of one account's run (a single-account install before issue 14 wrote
    `<run_id>|<window>`: shared.account_upgrade copies those)."""
    return f"{account}|{run_id}|{window_key}"


class CheckpointStore:
    """Firestore document `<prefix>_checkpoints/<account>|<run_id>|<window>`, one per window of an account's run;
    `checkpoints`: that collection (topology.CHECKPOINTS, from the composition root)."""

    def __init__(self, checkpoints: Any, account: str) -> None:
        self._checkpoints = checkpoints
        self._account = account

    def _doc(self, window: Window) -> Any:
        return self._checkpoints.document(checkpoint_id(self._account, window.run_id, window.key))

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


def note_refs_from_page(data: list[Any]) -> list[NoteRef]:
    """The ids and situações of a page; items that are not outgoing invoices or make no sense are left out loudly."""
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


def nfe_page_fetcher(bling: BlingApi) -> Callable[[list[tuple[str, str]]], Any]:
    """Pages of GET /nfe: the `data` value as Bling sent it (checked by the paginator and note_refs_from_page)."""
    def fetch(params: list[tuple[str, str]]) -> Any:
        return bling.get("/nfe", params).get("data")

    return fetch


def list_params(window: Window, page: int, page_size: int, situacao: int | None) -> list[tuple[str, str]]:
    params = [("pagina", str(page)), ("limite", str(page_size)), ("tipo", "1"),
              ("dataEmissaoInicial", f"{window.start.isoformat()} 00:00:00"),
              ("dataEmissaoFinal", f"{window.end.isoformat()} 23:59:59")]
    if situacao is not None:
        params.append(("situacao", str(situacao)))
    return params


class WindowListing:
    """The NF-e of one window, page by page, from its checkpoint on: iterate it for each page's new ids; when the
    loop is over, `result` says what was listed.

    The checkpoint moves past a page only when the loop asks for the next one, i.e. after the caller recorded and
    published that page's ids. A pass that fails permanently (page cap, a repeated page, garbage) does not stop
    the other one: the cancelled invoices of a window must be seen even when its default listing cannot be
    completed. The window then fails with one error that says what happened to each pass; the checkpoint stays
    at the first failed pass, so a replayed window lists again from there."""

    def __init__(self, window: Window, fetch_page: Callable[[list[tuple[str, str]]], Any],
                 checkpoints: CheckpointStore, page_size: int, page_cap: int):
        self.window, self.result = window, ListingResult()
        self._fetch, self._checkpoints, self._size, self._cap = fetch_page, checkpoints, page_size, page_cap

    def __iter__(self) -> Iterator[list[NoteRef]]:
        window, checkpoints = self.window, self._checkpoints
        checkpoint = checkpoints.load(window)
        if checkpoint.done:
            self.result.already_done = True
            return
        seen: dict[int, int] = {}
        reports: list[str] = []
        failures: list[str] = []
        failed_at: Checkpoint | None = None
        for pass_index in range(checkpoint.pass_index, len(PASSES)):
            pass_name = PASSES[pass_index][0]
            first_page = checkpoint.next_page if pass_index == checkpoint.pass_index else 1
            before = self.result.notes
            try:
                yield from self._pass(pass_index, first_page, seen)
            except (BlingPermanentError, PagingIncomplete) as exc:
                log.error(f"{pass_name} listing failed; the other pass still runs: {exc}",
                          event="listing_pass_failed", listing=pass_name)
                reports.append(f"{pass_name} listing: {exc}")
                failures.append(exc.reason if isinstance(exc, PagingIncomplete) else exc.error_type or "ERROR")
                failed_at = failed_at or checkpoints.load(window)
                checkpoints.save(window, Checkpoint(pass_index + 1, 1))
                continue
            reports.append(f"{pass_name} listing: {self.result.notes - before} NF-e listed")
        if failed_at is not None:
            checkpoints.save(window, failed_at)
            raise ListingIncomplete("+".join(failures), "window not complete; " + "; ".join(reports))
        checkpoints.save(window, Checkpoint(len(PASSES), 1, done=True))

    def _pass(self, pass_index: int, first_page: int, seen: dict[int, int]) -> Iterator[list[NoteRef]]:
        pass_name, situacao = PASSES[pass_index]

        def fetch(page: int) -> Any:
            self.result.pages += 1
            return self._fetch(list_params(self.window, page, self._size, situacao))

        for page in paginate(fetch, self._cap, first_page, what=f"{pass_name} listing"):
            refs = note_refs_from_page(page.items)
            new = [r for r in refs if seen.get(r.id) != r.situacao]
            seen.update((r.id, r.situacao) for r in refs)
            log.debug("page listed", page=page.number, listing=pass_name, items=len(refs), new=len(new))
            if new:
                yield new
                self.result.notes += len(new)
            self._checkpoints.save(self.window, Checkpoint(pass_index, page.number + 1))
        self._checkpoints.save(self.window, Checkpoint(pass_index + 1, 1))


def batches(items: list[NoteRef], size: int) -> Iterable[list[NoteRef]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]
