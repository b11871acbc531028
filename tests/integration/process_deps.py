"""The test process's composition root: one shared.deps.Deps per test environment, as a function process has one.

The in-process functions (pipeline_driver) and the tests' own Bling calls, token store and Firestore reads use the
same Deps, so they share one account's parts as the code of one instance does. It is built again when the settings
it was built from are not today's, or after forget_deps() (tests/conftest.py, between tests)."""
from __future__ import annotations

from typing import Any

from shared import config, topology
from shared.bling.client import BlingClient
from shared.bling.rate_budget import RateLedger
from shared.bling.token_store import TokenStore
from shared.deps import Deps

_deps: Deps | None = None


def current_deps() -> Deps:
    global _deps
    settings = config.read_settings()
    if _deps is None or _deps.settings != settings:
        _deps = Deps(settings)
    return _deps


def use_deps(deps: Deps) -> None:
    """Run with these parts (e.g. a faster retry table) until forget_deps()."""
    global _deps
    _deps = deps


def forget_deps() -> None:
    global _deps
    _deps = None


def account_client() -> BlingClient:
    """The single account's client, as the functions use it."""
    return current_deps().account().client


def new_client(token_store: TokenStore | None = None, **parts) -> BlingClient:
    """A BlingClient of its own over the single account's parts; `token_store`, `budget`, `policy` replace one."""
    account = current_deps().account()
    return current_deps().new_client(token_store or account.token_store, parts.pop("budget", account.rate_ledger),
                                     account.daily_limit, **parts)


def new_token_store() -> TokenStore:
    """A token store of its own (another instance of the same account), over the same Firestore client."""
    return current_deps().new_token_store()


def parked_collection() -> Any:
    """The collection parked messages go to (topology.PARKED)."""
    return current_deps().collection(topology.PARKED)


def rate_ledger() -> RateLedger:
    """The single account's rate ledger, as the functions use it."""
    return current_deps().account().rate_ledger
