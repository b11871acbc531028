"""The composition root's parts (ADR 010): built once per process, at module scope in each functions/<name>/main.py
(as the Google samples create their clients once), and passed down instead of looked up in module globals.

The Google clients and the database's connections are created on first use, not when Deps is built: importing a
main.py (a cold start, a test collecting it) must not open a channel. `cached_property` writes the instance's
__dict__ directly, so the frozen dataclass still refuses every other assignment.

What belongs to one Bling account (its token store, client, rate ledger, daily-limit state, database schema) is
an `Account`, built on first use by `account(account_id)` and kept per id: two accounts never share one. The id is
a slug (shared.accounts); every message resolves to one through `accounts.resolve(...)` before anything runs
(docs/decisions/011). The first transaction of an account in a process makes sure its schema exists and is
migrated (migrate.ensure_account_schema, idempotent, ~15 ms when up to date), so a newly connected account gets
its tables without an operator step.
"""
from __future__ import annotations

import dataclasses
import functools
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from shared import account_order, firestore_client, migrate, parking, pubsub, topology
from shared.account_registry import AccountRegistry
from shared.accounts import parse_account_id, schema_for
from shared.bling import http
from shared.bling.client import BlingClient, DailyLimit, RateBudget
from shared.bling.fleet_limits import FirestoreErrorCounts, FleetBudget, FleetErrorCap, TokenCallBudget
from shared.bling.oauth import OAuthClient
from shared.bling.rate_budget import FLEET_LEDGER_KEY, RateLedger
from shared.bling.retry_policy import Outcome, Rule
from shared.bling.token_store import TokenStore
from shared.config import Settings, read_settings
from shared.db import Database, SchemaDb


@dataclasses.dataclass(frozen=True)
class Account:
    """The per-account parts (the client holds the token store, rate ledger and daily limit). `db`: the account's
    database (its schema: shared.accounts.schema_for), passed to every store function."""
    account_id: str
    token_store: TokenStore
    rate_ledger: RateLedger
    daily_limit: DailyLimit
    client: BlingClient
    db: SchemaDb

    @property
    def schema(self) -> str:
        return self.db.schema


class _Once:
    """Runs `action` the first time it is called (in this process), under a lock; a failure is tried again on the
    next call (the database may be back)."""

    def __init__(self, action: Callable[[], object]):
        self._action, self._done, self._lock = action, False, threading.Lock()

    def __call__(self) -> None:
        if self._done:
            return
        with self._lock:
            if not self._done:
                self._action()
                self._done = True


@dataclasses.dataclass(frozen=True)
class Deps:
    settings: Settings
    bling_policy: Mapping[Outcome, Rule] | None = None  # None: shared.bling.retry_policy.POLICY
    _accounts: dict[str, Account] = dataclasses.field(default_factory=dict, init=False, repr=False, compare=False)
    _accounts_lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, init=False, repr=False,
                                                       compare=False)

    @classmethod
    def from_environment(cls) -> Deps:
        return cls(read_settings())

    @functools.cached_property
    def database(self) -> Database:
        """This process's database (one connection per thread, each opened on first use)."""
        return Database(self.settings)

    @functools.cached_property
    def firestore(self) -> Any:
        return firestore_client.new_client(self.settings.project_id)

    @functools.cached_property
    def publisher(self) -> Any:
        return pubsub.new_publisher()

    @functools.cached_property
    def http_session(self) -> http.RenewableSession:
        return http.RenewableSession()

    @functools.cached_property
    def accounts(self) -> AccountRegistry:
        """The Bling accounts this deployment serves (runtime data in Firestore)."""
        return AccountRegistry(self.firestore, self.collection(topology.ACCOUNTS))

    @functools.cached_property
    def oauth(self) -> OAuthClient:
        """The token endpoint with this process's per-minute guard (the IP's, whichever account calls)."""
        fleet = None
        if self.fleet_ledger is not None or self.fleet_errors is not None:
            fleet = TokenCallBudget(self.fleet_ledger, self.fleet_errors, self.settings.rate_max_wait_s)
        return OAuthClient(self.settings, self.http_session, fleet)

    @functools.cached_property
    def fleet_ledger(self) -> RateLedger | None:
        """The ledger every account's requests also take a slot of (ADR 012); None when BLING_FLEET_RATE_PER_S is
        0 (off: no static egress IP)."""
        if self.settings.fleet_rate_per_s <= 0:
            return None
        return RateLedger(self.collection(topology.RATE_TICKS), self.settings, FLEET_LEDGER_KEY,
                          rate_per_s=self.settings.fleet_rate_per_s)

    @functools.cached_property
    def fleet_errors(self) -> FleetErrorCap | None:
        """The fleet's error answers per 10 s against BLING_FLEET_ERRORS_PER_10S (ADR 012); None when it is 0."""
        if self.settings.fleet_errors_per_10s <= 0:
            return None
        counts = FirestoreErrorCounts(self.firestore, self.collection(topology.RATE_STATE))
        return FleetErrorCap(counts, self.settings.fleet_errors_per_10s)

    def fleet_budget(self, account_ledger: RateLedger) -> RateBudget:
        """An account's budget inside the fleet's caps when they are on; the account's ledger alone otherwise."""
        if self.fleet_ledger is None and self.fleet_errors is None:
            return account_ledger
        return FleetBudget(account_ledger, self.fleet_ledger, self.fleet_errors, self.settings.rate_max_wait_s)

    def close(self) -> None:
        """Close the database's connections, if any were opened (the end of a command run in-process, of a test
        environment); the clients need no closing."""
        if "database" in self.__dict__:
            self.database.close()

    def account(self, account_id: str) -> Account:
        """The parts of one Bling account (a slug: ValueError otherwise), built once per id."""
        account_id = parse_account_id(account_id)
        with self._accounts_lock:
            if account_id not in self._accounts:
                self._accounts[account_id] = self._new_account(account_id)
            return self._accounts[account_id]

    def _new_account(self, account_id: str) -> Account:
        tokens = self.new_token_store(account_id)
        ledger = RateLedger(self.collection(topology.RATE_TICKS), self.settings, account_id)
        daily = DailyLimit(self.collection(topology.RATE_STATE), self.settings.timezone, account_id)
        database = SchemaDb(self.database, schema_for(account_id),
                            _Once(lambda: migrate.ensure_account_schema(self.database, account_id)))
        return Account(account_id, tokens, ledger, daily, self.new_client(tokens, self.fleet_budget(ledger), daily),
                       database)

    def new_token_store(self, account_id: str) -> TokenStore:
        """A token store of its own for this account (account() keeps one; a test models another instance with a
        second one). A valid pair that clears a flag releases the account's parked work."""
        return TokenStore(self.firestore, self.settings, self.oauth, account_id,
                          on_restored=lambda: parking.release_after_fix(self, account_id))

    def new_client(self, token_store: TokenStore, budget: RateBudget, daily_limit: DailyLimit,
                   policy: Mapping[Outcome, Rule] | None = None) -> BlingClient:
        """A BlingClient from these parts and this process's session and settings (account() builds its own)."""
        return BlingClient(token_store=token_store, budget=budget, daily_limit=daily_limit,
                           base_url=self.settings.bling_api_base, http=self.http_session,
                           timeout_s=self.settings.bling_http_timeout_s, policy=policy or self.bling_policy,
                           fleet_errors=self.fleet_errors)

    def collection(self, registered: topology.Collection) -> Any:
        """Collection `<prefix>_<name>` of one registered collection (shared.topology.COLLECTIONS)."""
        return firestore_client.collection_in(self.firestore, self.settings.firestore_prefix, registered)

    def publish_json(self, topic: str, payloads: Iterable[dict[str, Any]], **attributes: str) -> list[str]:
        """Publish payloads as JSON: publish()."""
        return self.publish(topic, (pubsub.json_bytes(p) for p in payloads), **attributes)

    def publish(self, topic: str, messages: Iterable[bytes], **attributes: str) -> list[str]:
        """Publish to `topic` and wait for Pub/Sub to take every message; a message of an account (`account=`
        attribute) carries the ordering key shared.account_order gives it (the account's own, while two or more
        accounts are active)."""
        account = attributes.get("account")
        key = account_order.ordering_key(topic, account, len(self.accounts.active())) if account else ""
        return pubsub.publish_with(self.publisher, self.settings.project_id, topic, messages, 60.0,
                                   ordering_key=key, **attributes)
