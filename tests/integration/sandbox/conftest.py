"""Fixtures for the sandbox tests: a shared fast server (no practical rate limit) and a factory for servers
configured per test (real 3/s limit, short TTLs, ...)."""
from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from local.sandbox.dataset import Dataset, build_profile
from local.sandbox.server import SandboxServer
from tests.integration.sandbox.helpers import Api

# The material handed to the project sits beside the repository (../shared), in CI as on developers' machines.
_REPO = pathlib.Path(__file__).resolve().parents[3]
SPEC_PATH = _REPO.parent / "shared" / "bling" / "bling-openapi-v3.json"


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
        # With `accounts`, the datasets come with them; otherwise the one dataset (default: small).
        server = SandboxServer(dataset if dataset is not None or "accounts" in kw else small, **kw).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def spec() -> dict[str, Any]:
    if not SPEC_PATH.exists():
        if os.environ.get("CI", "").strip().lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true and the Bling OpenAPI spec is missing at {SPEC_PATH}", pytrace=False)
        pytest.skip(f"Bling OpenAPI spec not available at {SPEC_PATH}")
    return json.loads(SPEC_PATH.read_text(encoding="utf-8"))
