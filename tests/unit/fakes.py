"""Small fakes of our own interfaces (shared.bling.api.BlingApi) for the server-free tier."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared.bling.api import Params

Route = Callable[[dict[str, list[str]]], Any]


class FakeBling:
    """Answers GETs from `routes` (path → function of the query as {name: [values]} → the JSON object), and
    records every call as (path, query)."""

    def __init__(self, routes: dict[str, Route]):
        self.routes = routes
        self.calls: list[tuple[str, dict[str, list[str]]]] = []

    def get(self, path: str, params: Params = None) -> dict[str, Any]:
        query: dict[str, list[str]] = {}
        pairs = params.items() if isinstance(params, dict) else (params or [])
        for name, value in pairs:
            query.setdefault(name, []).append(str(value))
        self.calls.append((path, query))
        answer = self.routes[path](query)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def calls_to(self, path: str) -> int:
        return sum(1 for p, _ in self.calls if p == path)


class FakeClock:
    """Time that passes only when someone sleeps (the fleet-limit tests run in one thread)."""

    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)


class FakeTickLedger:
    """shared.bling.fleet_limits.SlotLedger in memory: tick n of this ledger starts at (n + phase) / rate and may be
    sent up to `slack` of a tick later; each tick has one holder (thread-safe). `clock`: a FakeClock, or the real
    time.time with time.sleep as `sleep` for tests with threads."""

    def __init__(self, clock: Callable[[], float], rate_per_s: float, phase: float = 0.0, slack: float = 0.15,
                 sleep: Callable[[float], None] | None = None):
        import threading

        from shared.bling.rate_budget import Slot

        self._slot = Slot
        self._lock = threading.Lock()
        self.clock = clock
        self.sleep = sleep or clock.sleep  # type: ignore[attr-defined]
        self.tick_s = 1.0 / rate_per_s
        self.phase = phase
        self.slack_s = slack * self.tick_s
        self.claim_latency_s = 0.0
        self.taken: set[int] = set()
        self.dropped_for_fleet = 0
        self.sends: list[float] = []

    def start(self, n: int) -> float:
        return (n + self.phase) * self.tick_s

    def claim(self, lead_s: float = 0.0) -> Any:
        import math

        with self._lock:
            n = math.ceil((self.clock() + lead_s - self.slack_s) / self.tick_s - self.phase)
            while n in self.taken:
                n += 1
            self.taken.add(n)
        return self._slot(n, self.start(n), self.start(n) + self.slack_s, 1)

    def claim_within(self, not_before: float, not_after: float) -> tuple[Any, int]:
        import math

        n = math.ceil(max(not_before, self.clock() - self.slack_s) / self.tick_s - self.phase)
        ops = 0
        while self.start(n) <= not_after:
            ops += 1
            with self._lock:
                if n not in self.taken:
                    self.taken.add(n)
                    return self._slot(n, self.start(n), self.start(n) + self.slack_s, ops), ops
            n += 1
        return None, ops

    def wait_for(self, start: float, end: float) -> bool:
        wait = start - self.clock()
        if wait > 0:
            self.sleep(wait)
        now = self.clock()
        if now > end:
            return False
        with self._lock:
            self.sends.append(now)
        return True

    def acquire(self) -> int:
        slot = self.claim()
        assert self.wait_for(slot.start, slot.end)
        return slot.ops

    def count_dropped_for_fleet(self) -> None:
        self.dropped_for_fleet += 1


class FakeErrorCounts:
    """shared.bling.fleet_limits.ErrorCounts in memory (shared by every 'instance' given the same object)."""

    def __init__(self) -> None:
        self.by_window: dict[int, int] = {}
        self.reads = 0

    def add(self, window: int) -> None:
        self.by_window[window] = self.by_window.get(window, 0) + 1

    def get(self, windows: list[int]) -> list[int]:
        self.reads += 1
        return [self.by_window.get(w, 0) for w in windows]
