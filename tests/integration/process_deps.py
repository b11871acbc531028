"""The test process's composition root: one shared.deps.Deps per test environment, as a function process has one.

The in-process functions (pipeline_driver) and the tests' own Bling calls, token store and Firestore reads use the
same Deps, so they share one account's parts (and its database connections) as the code of one instance does. It
is built again, the previous one's connections closed, when the settings it was built from are not today's, or
after forget_deps() (tests/conftest.py, between tests).

The tests run as one account, DEFAULT_ACCOUNT (local.stack), unless they name another: `authorize()` stores its
pair and makes it active in the registry, as the auth function's callback does."""
from __future__ import annotations

from typing import Any

from local.stack.base import DEFAULT_ACCOUNT
from shared import config, topology
from shared.accounts import schema_for
from shared.bling.client import BlingClient
from shared.bling.rate_budget import RateLedger
from shared.bling.token_store import TokenStore
from shared.db import Database, SchemaDb
from shared.deps import Account, Deps

_deps: Deps | None = None


def current_deps() -> Deps:
    global _deps
    settings = config.read_settings()
    if _deps is None or _deps.settings != settings:
        _replace(Deps(settings))
    assert _deps is not None
    return _deps


def use_deps(deps: Deps) -> None:
    """Run with these parts (e.g. a faster retry table) until forget_deps()."""
    _replace(deps)


def forget_deps() -> None:
    """Drop the Deps, closing its database connections (on every thread that opened one): nothing of one test
    environment reaches the next, and the many tests never pile up connections (max_connections)."""
    _replace(None)


def _replace(deps: Deps | None) -> None:
    global _deps
    previous, _deps = _deps, deps
    if previous is not None and previous is not deps:
        previous.close()


def database() -> Database:
    """The test process's database (its Deps'), read when called: the settings of this moment's environment."""
    return current_deps().database


def account(account_id: str = DEFAULT_ACCOUNT) -> Account:
    """One account's parts in the test process's Deps (default: the tests' account)."""
    return current_deps().account(account_id)


def account_db(account_id: str = DEFAULT_ACCOUNT) -> SchemaDb:
    """The account's database as the store functions take it (no Firestore needed: for tests with db_env only)."""
    return SchemaDb(database(), schema_for(account_id))


def authorize(pair: dict[str, Any], account_id: str = DEFAULT_ACCOUNT) -> None:
    """Connect the account as the auth function's callback does: its pair stored, the account active."""
    deps = current_deps()
    deps.accounts.register(account_id)
    deps.account(account_id).token_store.store_authorization(pair)
    deps.accounts.mark_authorized(account_id)


def token_document(account_id: str = DEFAULT_ACCOUNT) -> Any:
    """The account's token document (`<prefix>_oauth/<account>`)."""
    return current_deps().collection(topology.OAUTH).document(account_id)


def account_client() -> BlingClient:
    """The tests' account's client, as the functions use it."""
    return account().client


def new_client(token_store: TokenStore | None = None, **parts) -> BlingClient:
    """A BlingClient of its own over the tests' account's parts; `token_store`, `budget`, `policy` replace one."""
    parts_of = account()
    return current_deps().new_client(token_store or parts_of.token_store, parts.pop("budget", parts_of.rate_ledger),
                                     parts_of.daily_limit, **parts)


def new_token_store(account_id: str = DEFAULT_ACCOUNT) -> TokenStore:
    """A token store of its own (another instance of the same account), over the same Firestore client."""
    return current_deps().new_token_store(account_id)


def parked_collection() -> Any:
    """The collection parked messages go to (topology.PARKED)."""
    return current_deps().collection(topology.PARKED)


def rate_ledger() -> RateLedger:
    """The tests' account's rate ledger, as the functions use it."""
    return account().rate_ledger
