"""The composition root's parts (ADR 010): built once per process, at module scope in each functions/<name>/main.py
(as the Google samples create their clients once), and passed down instead of looked up in module globals.

The Google clients are created on first use, not when Deps is built: importing a main.py (a cold start, a test
collecting it) must not open a channel. `cached_property` writes the instance's __dict__ directly, so the frozen
dataclass still refuses every other assignment.
"""
from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable, Mapping
from typing import Any

from shared import firestore_client, pubsub, topology
from shared.bling import http, rate_budget
from shared.bling.client import BlingClient
from shared.bling.retry_policy import Outcome, Rule
from shared.bling.token_store import TokenStore
from shared.config import Settings, read_settings


@dataclasses.dataclass(frozen=True)
class Account:
    """The per-account parts: one account today; issue 14 keys them by account."""
    token_store: TokenStore
    client: BlingClient


@dataclasses.dataclass(frozen=True)
class Deps:
    settings: Settings
    bling_policy: Mapping[Outcome, Rule] | None = None  # None: shared.bling.retry_policy.POLICY

    @classmethod
    def from_environment(cls) -> Deps:
        return cls(read_settings())

    @functools.cached_property
    def firestore(self) -> Any:
        return firestore_client.new_client(self.settings.project_id)

    @functools.cached_property
    def publisher(self) -> Any:
        return pubsub.new_publisher()

    @functools.cached_property
    def http_session(self) -> Any:
        return http.new_session()

    @functools.cached_property
    def _account(self) -> Account:
        tokens = TokenStore()
        client = BlingClient(token_store=tokens, policy=self.bling_policy, budget=rate_budget,
                             base_url=self.settings.bling_api_base, http=self.http_session,
                             timeout_s=self.settings.bling_http_timeout_s)
        return Account(tokens, client)

    def account(self) -> Account:
        return self._account

    def collection(self, registered: topology.Collection) -> Any:
        """Collection `<prefix>_<name>` of one registered collection (shared.topology.COLLECTIONS)."""
        return firestore_client.collection_in(self.firestore, self.settings.firestore_prefix, registered)

    def topic_path(self, topic: str) -> str:
        return str(self.publisher.topic_path(self.settings.project_id, topic))

    def publish_json(self, topic: str, payloads: Iterable[dict[str, Any]], **attributes: str) -> list[str]:
        return pubsub.publish_json_with(self.publisher, self.settings.project_id, topic, payloads, 60.0, **attributes)
