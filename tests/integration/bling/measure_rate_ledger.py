"""Measure the Firestore tick ledger (numbers quoted in docs/decisions/001-account-rate-budget.md).

Needs a Firestore emulator: FIRESTORE_EMULATOR_HOST=127.0.0.1:PORT python -m tests.integration.bling.measure_rate_ledger
Each worker is a separate process (its own Firestore client and its own "highest tick known"), as separate
Cloud Functions instances would be. Not collected by pytest (the file name does not start with test_).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import time
import uuid


def _worker(prefix: str, budget: float, requests: int, start_at: float, queue) -> None:
    os.environ["FIRESTORE_PREFIX"] = prefix
    os.environ["BLING_RATE_BUDGET_PER_S"] = str(budget)
    from shared import topology
    from shared.bling.rate_budget import RateLedger
    from shared.deps import Deps

    deps = Deps.from_environment()  # this worker's composition root: a process of its own
    deps.account("measure").rate_ledger.acquire()  # warm the client (channel set-up) before the measured part
    # A fresh ledger of the same account: stats from zero.
    ledger = RateLedger(deps.collection(topology.RATE_TICKS), deps.settings, "measure")
    while time.time() < start_at:
        time.sleep(0.005)
    sends, overheads = [], []
    for _ in range(requests):
        asked = time.time()
        ledger.acquire()
        sent = time.time()
        sends.append(sent)
        overheads.append(sent - asked)
    queue.put({"sends": sends, "stats": ledger.stats().__dict__, "acquire_s": overheads})


def max_in_window(times: list[float], window: float = 1.0) -> int:
    times = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] >= window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def run(workers: int, budget: float, requests: int) -> dict:
    prefix = f"measure{uuid.uuid4().hex[:6]}"
    queue = multiprocessing.get_context("spawn").Queue()
    start_at = time.time() + 3.0
    procs = [multiprocessing.get_context("spawn").Process(target=_worker, args=(prefix, budget, requests, start_at,
                                                                                 queue)) for _ in range(workers)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=300) for _ in procs]
    for p in procs:
        p.join()
    sends = sorted(t for r in results for t in r["sends"])
    claims = sum(r["stats"]["claims"] for r in results)
    conflicts = sum(r["stats"]["conflicts"] for r in results)
    late = sum(r["stats"]["dropped_late"] for r in results)
    claim_s = sum(r["stats"]["claim_seconds"] for r in results)
    total = len(sends)
    span = sends[-1] - sends[0]
    return {
        "workers": workers, "budget_per_s": budget, "requests": total,
        "achieved_per_s": round((total - 1) / span, 2) if span else None,
        "max_in_any_1s": max_in_window(sends),
        "conflicts_per_request": round(conflicts / total, 2),
        "dropped_late_per_request": round(late / total, 3),
        "firestore_ms_per_request": round(1000 * claim_s / total, 1),
        "creates_per_request": round((claims + conflicts) / total, 2),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 3, 10])
    parser.add_argument("--budget", type=float, default=2.8)
    parser.add_argument("--requests", type=int, default=0, help="per worker; default: about 12 s of budget")
    args = parser.parse_args()
    for n in args.workers:
        per_worker = args.requests or max(2, round(args.budget * 12 / n))
        print(json.dumps(run(n, args.budget, per_worker)), flush=True)
