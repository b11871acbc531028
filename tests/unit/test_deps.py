"""The composition root (shared.deps): one set of parts per process, each built from the settings it was given."""
from __future__ import annotations

import dataclasses

import pytest

from shared.bling import rate_budget
from shared.config import read_settings
from shared.deps import Deps


def test_the_account_is_built_once_from_the_deps_own_settings(monkeypatch):
    monkeypatch.setenv("BLING_API_BASE", "http://bling.invalid/api/")
    monkeypatch.setenv("BLING_HTTP_TIMEOUT_S", "7.5")
    deps = Deps(read_settings())
    account = deps.account()
    assert deps.account() is account and deps.http_session is deps.http_session
    client = account.client
    assert (client._base, client._timeout, client._http, client._tokens, client._budget) == (
        "http://bling.invalid/api", 7.5, deps.http_session, account.token_store, rate_budget)


def test_deps_cannot_be_changed_after_it_is_built():
    deps = Deps(read_settings())
    with pytest.raises(dataclasses.FrozenInstanceError):
        deps.settings = read_settings()  # type: ignore[misc]
