"""The composition root (shared.deps): one set of parts per process, each built from the settings it was given."""
from __future__ import annotations

import dataclasses

import pytest

from shared.config import read_settings
from shared.deps import Deps


@pytest.fixture(autouse=True)
def no_google_credentials(monkeypatch):
    """Building an account creates (never uses) a Firestore client: pointed at an emulator, it needs no credentials
    and opens no connection."""
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", "127.0.0.1:9")


def test_the_account_is_built_once_from_the_deps_own_settings(monkeypatch):
    monkeypatch.setenv("BLING_API_BASE", "http://bling.invalid/api/")
    monkeypatch.setenv("BLING_HTTP_TIMEOUT_S", "7.5")
    deps = Deps(read_settings())
    account = deps.account("loja-a")
    assert deps.account("loja-a") is account and deps.http_session is deps.http_session
    client = account.client
    assert (client._base, client._timeout, client._http, client._tokens, client._budget, client._daily) == (
        "http://bling.invalid/api", 7.5, deps.http_session, account.token_store, account.rate_ledger,
        account.daily_limit)
    assert account.token_store._endpoint is deps.oauth  # the per-process token-call guard


def test_each_account_id_gets_parts_of_its_own():
    deps = Deps(read_settings())
    single, other = deps.account("loja-a"), deps.account("acme")
    assert deps.account("loja-a") is single and deps.account("acme") is other
    assert (other.account_id, single.account_id) == ("acme", "loja-a")
    assert (other.schema, single.schema) == ("bling_acme", "bling_loja_a")
    for part in ("token_store", "rate_ledger", "daily_limit", "client", "db"):
        assert getattr(single, part) is not getattr(other, part), part
    # Each keys its Firestore documents by its account: the token document, the daily-limit state, the ticks.
    assert (single.token_store.account, other.token_store.account) == ("loja-a", "acme")
    assert single.daily_limit._ref.id == "loja-a|daily_limit" and other.daily_limit._ref.id == "acme|daily_limit"
    assert single.rate_ledger.tick_id(7) == "loja-a|000000000007"


@pytest.mark.parametrize("bad", ["", "Loja", "lo", "loja_a", "-loja", "loja--a"])
def test_an_account_id_that_is_not_a_slug_is_refused(bad):
    with pytest.raises(ValueError):
        Deps(read_settings()).account(bad)


def test_two_processes_share_nothing():
    first, second = Deps(read_settings()), Deps(read_settings())
    assert first.account("loja-a") is not second.account("loja-a") and first.oauth is not second.oauth


def test_deps_cannot_be_changed_after_it_is_built():
    deps = Deps(read_settings())
    with pytest.raises(dataclasses.FrozenInstanceError):
        deps.settings = read_settings()  # type: ignore[misc]


def test_the_database_is_the_deps_own_and_every_account_schema_uses_it(monkeypatch):
    """Issue 12: no module-level connection state; each composition root owns one Database (opened lazily)."""
    from shared import db

    monkeypatch.setenv("DB_HOST", "db.invalid")
    first, second = Deps(read_settings()), Deps(read_settings())
    assert isinstance(first.database, db.Database) and first.database is first.database
    assert first.database is not second.database
    assert first.account("loja-a").db.database is first.database is first.account("acme").db.database
    assert not any(hasattr(db, name) for name in ("transaction", "fetch_all", "execute", "connect", "_local"))
    first.close()  # nothing was opened: nothing to close, no connection attempted
    Deps(read_settings()).close()  # a Deps that never built its database does not build one to close it
