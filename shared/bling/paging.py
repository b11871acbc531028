"""One paginator for Bling's paged GETs: a generator of pages, with the end, the cap and loop detection inside.

Bling gives no totals, and its pages can repeat items of the previous page or carry more than `limite` items, so
"fewer than limite" never ends a listing: only an empty page does. When Bling serves the very same page again and
again (what it does when it ignores `pagina`), completeness cannot be proved, and the paginator says so at once
instead of paging to the cap; a page that merely overlaps the previous one ends nothing. Reaching the cap is
also said out loud (PagingIncomplete), never a silent truncation.

The caller iterates (dlt's paginate(), Singer's advance()): the code after its loop body runs before the next
page is fetched, which is where the lister moves its checkpoint (Singer's bookmark rule).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

from shared.errors import PermanentError

# Bling served one page this many more times in a row: it ignores `pagina`.
IDENTICAL_PAGES_TO_STOP = 2


class PagingIncomplete(PermanentError):
    """The listing cannot be proved complete. `reason`: PAGE_CAP, REPEATED_PAGE, INVALID_RESPONSE, or several
    joined by + (shared.listing reports both passes of a window in one)."""

    def __init__(self, reason: str, message: str):
        super().__init__(f"{reason}: {message}")
        self.reason = reason

    def log_fields(self) -> dict[str, Any]:
        return {"paging_failure": self.reason}


@dataclasses.dataclass(frozen=True)
class Page:
    number: int
    items: list[Any]  # the `data` list as Bling sent it; its items are checked by whoever reads them


def _ids(items: list[Any]) -> list[Any]:
    return [item.get("id") for item in items if isinstance(item, dict)]


def paginate(fetch: Callable[[int], Any], cap: int, first_page: int = 1, what: str = "listing") -> Iterator[Page]:
    """fetch(n) returns the `data` value of page n. Yields every non-empty page from first_page on; returns after
    the first empty page. Raises PagingIncomplete when page cap+1 would be fetched, when `data` is not a list, or
    when one page comes IDENTICAL_PAGES_TO_STOP more times in a row."""
    previous: list[Any] = []
    identical = 0
    number = first_page
    while True:
        if number > cap:
            raise PagingIncomplete("PAGE_CAP", f"{what} passed {cap} pages; raise the page cap or ask for less")
        data = fetch(number)
        if not isinstance(data, list):
            raise PagingIncomplete("INVALID_RESPONSE", f"{what}: page {number} has no data list "
                                   f"(data is {type(data).__name__})")
        if not data:
            return  # the only reliable end of a listing
        ids = _ids(data)
        identical = identical + 1 if ids and ids == previous else 0
        previous = ids
        if identical >= IDENTICAL_PAGES_TO_STOP:
            raise PagingIncomplete("REPEATED_PAGE", f"{what}: Bling served the same page {identical + 1} times up "
                                   f"to page {number}; pagina seems ignored, the listing cannot be proved complete")
        yield Page(number, data)
        number += 1
