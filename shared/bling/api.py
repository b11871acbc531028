"""What the steps need of Bling: one GET. BlingClient (shared.bling.client) is the real one; the unit tier passes
small fakes of this interface, so paging, lookups and decisions are tested without a server."""
from __future__ import annotations

from typing import Any, Protocol

Params = dict[str, Any] | list[tuple[str, str]] | None


class BlingApi(Protocol):
    def get(self, path: str, params: Params = None) -> dict[str, Any]:
        """GET base + path: the parsed JSON object; raises the classes of shared.bling.errors."""
        ...
