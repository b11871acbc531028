"""The Pub/Sub topology: which topic feeds which function, and how its subscription retries.

This is the single source of truth for topic and subscription names and delivery policy. The local stack creates
exactly these, and a test checks that infra/ declares the same (tests/infra).

Each worker function is reached through a push subscription that we own (not one created by Eventarc), so that it
can carry a dead-letter topic and a retry policy: see docs/decisions/002-push-subscriptions-with-dead-letters.md.
"""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Route:
    topic: str
    function: str  # folder under functions/
    entry_point: str  # the function in functions/<function>/main.py
    max_delivery_attempts: int = 5
    min_backoff_s: int = 10
    max_backoff_s: int = 600
    ack_deadline_s: int = 540

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
WINDOWS = Route(topic="bling-windows", function="lister", entry_point="on_window")
NFE = Route(topic="bling-nfe", function="detail", entry_point="on_nfe_batch")
ENRICH = Route(topic="bling-enrich", function="enrich", entry_point="on_enrich")

ROUTES: tuple[Route, ...] = (SCHEDULE, WINDOWS, NFE, ENRICH)

# HTTP functions: folder -> entry point. Only these are reachable from outside (auth callback).
HTTP_FUNCTIONS: dict[str, str] = {"auth": "auth_http"}

ALL_FUNCTIONS: dict[str, str] = {**{r.function: r.entry_point for r in ROUTES}, **HTTP_FUNCTIONS}

