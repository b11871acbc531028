"""Small fakes of our own interfaces (shared.bling.api.BlingApi) for the server-free tier."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared.bling.api import Params

Route = Callable[[dict[str, list[str]]], Any]


class FakeBling:
    """Answers GETs from `routes` (path → function of the query as {name: [values]} → the JSON object), and
    records every call as (path, query)."""

    def __init__(self, routes: dict[str, Route]):
        self.routes = routes
        self.calls: list[tuple[str, dict[str, list[str]]]] = []

    def get(self, path: str, params: Params = None) -> dict[str, Any]:
        query: dict[str, list[str]] = {}
        pairs = params.items() if isinstance(params, dict) else (params or [])
        for name, value in pairs:
            query.setdefault(name, []).append(str(value))
        self.calls.append((path, query))
        answer = self.routes[path](query)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def calls_to(self, path: str) -> int:
        return sum(1 for p, _ in self.calls if p == path)
