"""The pipeline's named resources: which topic feeds which function and how its subscription retries, and the
Firestore collections with how long their documents live.

This is the single source of truth for topic, subscription and collection names, delivery policy and TTLs. The
local stack creates exactly these, and tests/integration/infra checks that infra/ declares the same (topics,
subscriptions, and a TTL policy on every collection that has a TTL here).

Each worker function is reached through a push subscription that we own (not one created by Eventarc), so that it
can carry a dead-letter topic and a retry policy: see docs/decisions/002-push-subscriptions-with-dead-letters.md.
"""
from __future__ import annotations

import dataclasses
import datetime


@dataclasses.dataclass(frozen=True)
class Route:
    topic: str
    function: str  # folder under functions/
    entry_point: str  # the function in functions/<function>/main.py
    max_delivery_attempts: int = 5
    min_backoff_s: int = 10
    max_backoff_s: int = 600
    ack_deadline_s: int = 540
    # Messages carry their account as the ordering key while two or more accounts are active, and the subscription
    # has message ordering: Pub/Sub then pushes one message of an account at a time (shared.account_order, ADR 014).
    ordered_by_account: bool = False

    @property
    def subscription(self) -> str:
        return f"{self.topic}-push"

    @property
    def dead_letter_topic(self) -> str:
        return f"{self.topic}-dead-letter"

    @property
    def dead_letter_subscription(self) -> str:
        """Pull subscription that keeps dead letters until someone replays them (ops.replay_dead_letters)."""
        return f"{self.topic}-dead-letter-hold"


SCHEDULE = Route(topic="bling-schedule", function="scheduler", entry_point="on_schedule")
WINDOWS = Route(topic="bling-windows", function="lister", entry_point="on_window", ordered_by_account=True)
NFE = Route(topic="bling-nfe", function="detail", entry_point="on_nfe_batch", ordered_by_account=True)
ENRICH = Route(topic="bling-enrich", function="enrich", entry_point="on_enrich", ordered_by_account=True)

ROUTES: tuple[Route, ...] = (SCHEDULE, WINDOWS, NFE, ENRICH)


def route_of(topic: str) -> Route | None:
    """The route fed by `topic`; None for a topic that feeds no function (a dead-letter topic)."""
    return next((route for route in ROUTES if route.topic == topic), None)

# HTTP functions: folder -> entry point. Only these are reachable from outside (auth callback).
HTTP_FUNCTIONS: dict[str, str] = {"auth": "auth_http"}

ALL_FUNCTIONS: dict[str, str] = {**{r.function: r.entry_point for r in ROUTES}, **HTTP_FUNCTIONS}



# ---------------------------------------------------------------------------------------------------- Firestore


@dataclasses.dataclass(frozen=True)
class Collection:
    """`<FIRESTORE_PREFIX>_<name>`. With a ttl, every document carries `expire_at` (set by its writer, at most ttl
    after the write) and Firestore's TTL policy on that field deletes it; without, documents live until deleted."""

    name: str
    ttl: datetime.timedelta | None = None

    def expire_at(self, now: datetime.datetime) -> datetime.datetime:
        if self.ttl is None:
            raise ValueError(f"collection {self.name} keeps its documents; it has no expiry")
        return now + self.ttl


OAUTH = Collection("oauth")  # the token document: never expires (losing it means a manual re-authorization)
OAUTH_STATES = Collection("oauth_states", datetime.timedelta(hours=1))  # a state's own validity is shorter (setting)
OAUTH_CODES = Collection("oauth_codes", datetime.timedelta(days=1))  # authorization codes already exchanged
RATE_TICKS = Collection("rate_ticks", datetime.timedelta(hours=1))  # the account's request slots (ADR 001)
# The remembered daily-quota stop: until the next reset (at most a day away) plus two days of evidence.
RATE_STATE = Collection("rate_state", datetime.timedelta(days=3))
TOKEN_METER = Collection("token_meter")  # N reused slot documents (ADR 008): nothing accumulates
# One per window of a run: a redelivery or a replay weeks later resumes from it; older runs are not resumed.
CHECKPOINTS = Collection("checkpoints", datetime.timedelta(days=30))
ENRICH_CLAIMS = Collection("enrich_claims", datetime.timedelta(minutes=5))  # a fetch in flight
PARKED = Collection("parked")  # work kept until a human fixes something: never dropped by a TTL
ACCOUNTS = Collection("accounts")  # the Bling accounts this deployment serves (shared.account_registry): runtime data

COLLECTIONS: tuple[Collection, ...] = (OAUTH, OAUTH_STATES, OAUTH_CODES, RATE_TICKS, RATE_STATE, TOKEN_METER,
                                       CHECKPOINTS, ENRICH_CLAIMS, PARKED, ACCOUNTS)
