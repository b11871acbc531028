"""Test helpers for the sandbox tests: a tiny API client and the Basic auth header."""
from __future__ import annotations

import base64
from typing import Any

import requests

from local.sandbox import jsonutil
from local.sandbox.server import SandboxServer


class Api:
    """A tiny client: one session, a bearer token issued through the admin shortcut, exact-decimal JSON."""

    def __init__(self, server: SandboxServer, token: str | None = None) -> None:
        self.server = server
        self.session = requests.Session()
        self.token = token or server.issue_tokens()["access_token"]
        self.session.headers["Authorization"] = f"Bearer {self.token}"

    def get(self, path: str, params: Any = None, **kw: Any) -> requests.Response:
        return self.session.get(self.server.api_base + path, params=params, timeout=10, **kw)

    def data(self, path: str, params: Any = None) -> Any:
        r = self.get(path, params)
        assert r.status_code == 200, (r.status_code, r.text[:300])
        return jsonutil.loads(r.content)["data"]

    def admin(self, name: str, body: dict[str, Any] | None = None) -> Any:
        url = f"{self.server.url}/__admin/{name}"
        r = requests.post(url, json=body or {}, timeout=10) if body is not None else requests.get(url, timeout=10)
        assert r.status_code == 200, r.text
        return jsonutil.loads(r.content)


def basic(client_id: str = "sandbox-client", secret: str = "sandbox-secret") -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()
