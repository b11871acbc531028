"""Fixtures for the sandbox tests: a shared fast server (no practical rate limit) and a factory for servers
configured per test (real 3/s limit, short TTLs, ...)."""
from __future__ import annotations

import base64
import json
import pathlib
from typing import Any, Callable, Iterator

import pytest
import requests

from local.sandbox import jsonutil
from local.sandbox.dataset import Dataset, build_profile
from local.sandbox.server import SandboxServer

SPEC_PATH = pathlib.Path("/work/shared/bling/bling-openapi-v3.json")


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


@pytest.fixture(scope="session")
def small() -> Dataset:
    return build_profile("small", seed=7)


@pytest.fixture(scope="module")
def sandbox(small: Dataset) -> Iterator[SandboxServer]:
    server = SandboxServer(small, rate_per_s=1000).start()
    yield server
    server.stop()


@pytest.fixture
def api(sandbox: SandboxServer) -> Iterator[Api]:
    sandbox.set_faults()
    sandbox.reset_stats()
    client = Api(sandbox)
    yield client
    sandbox.set_faults()
    client.session.close()


@pytest.fixture
def make_server(small: Dataset) -> Iterator[Callable[..., SandboxServer]]:
    started: list[SandboxServer] = []

    def make(dataset: Dataset | None = None, **kw: Any) -> SandboxServer:
        server = SandboxServer(dataset or small, **kw).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def spec() -> dict[str, Any]:
    if not SPEC_PATH.exists():
        pytest.skip("Bling OpenAPI spec not available")
    return json.loads(SPEC_PATH.read_text(encoding="utf-8"))
