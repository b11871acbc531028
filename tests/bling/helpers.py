"""Helpers for the Bling client, token store and auth tests (real Firestore emulator, real HTTP to the sandbox)."""
from __future__ import annotations

import json
import os
import threading
from typing import Any, Callable

from shared import config


def reset_bling_state() -> None:
    """Forget every process-wide cache of shared.bling (client, session, token store, ledger, token guard)."""
    from shared.bling import client, oauth, rate_budget

    config.reset_settings_cache()
    client.reset_client()
    rate_budget.reset()
    oauth.reset_guard()


def set_env(**values: Any) -> None:
    os.environ.update({k: str(v) for k, v in values.items()})
    reset_bling_state()


def store_pair(server: Any, expires_in: int | None = None) -> dict[str, Any]:
    """A fresh pair from the sandbox (JWT-sized), saved through the token store like the auth callback does."""
    from shared.bling.token_store import TokenStore

    pair = server.issue_tokens(jwt=True)
    if expires_in is not None:
        pair = {**pair, "expires_in": expires_in}
    TokenStore().store_authorization(pair)
    return pair


def token_doc() -> dict[str, Any]:
    from shared import firestore_client

    snap = firestore_client.collection("oauth").document("bling").get()
    return snap.to_dict() or {}


def log_lines(captured: str) -> list[dict[str, Any]]:
    lines = []
    for raw in captured.splitlines():
        raw = raw.strip()
        if raw.startswith("{"):
            try:
                lines.append(json.loads(raw))
            except ValueError:
                pass
    return lines


def run_concurrently(n: int, work: Callable[[int], Any]) -> list[Any]:
    """Run work(i) in n threads released together; the results (or the exceptions) in order."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(i)
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


def _refresh_in_process(barrier: Any, queue: Any) -> None:
    """A separate "instance": its own Firestore client, token store and token-call guard."""
    from shared.bling.token_store import TokenStore

    store = TokenStore()
    store._read()  # open the Firestore channel before the race starts
    barrier.wait()
    try:
        queue.put(("ok", store.get_valid_access_token()))
    except Exception as exc:  # noqa: BLE001 - the test inspects it
        queue.put(("error", repr(exc)))


def refresh_in_processes(n: int) -> list[tuple[str, str]]:
    """n processes ask for a valid token at the same instant; their (outcome, token or error) answers."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    barrier, queue = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_refresh_in_process, args=(barrier, queue)) for _ in range(n)]
    for p in procs:
        p.start()
    answers = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    return answers
