"""Helpers for the Bling client, token store and auth tests (real Firestore emulator, real HTTP to the sandbox)."""
from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Callable
from typing import Any

from local.stack.base import DEFAULT_ACCOUNT
from shared import config, topology
from tests.integration.process_deps import authorize, current_deps, forget_deps, new_token_store, token_document


def reset_bling_state() -> None:
    """A new process: the next current_deps() builds new clients and account parts (token store, ledger, guard)."""
    config.reset_settings_cache()
    forget_deps()


def set_env(**values: Any) -> None:
    os.environ.update({k: str(v) for k, v in values.items()})
    reset_bling_state()


def store_pair(server: Any, expires_in: int | None = None) -> dict[str, Any]:
    """A fresh pair from the sandbox (JWT-sized), saved through the token store like the auth callback does (the
    tests' account then active)."""
    pair = server.issue_tokens(jwt=True)
    if expires_in is not None:
        pair = {**pair, "expires_in": expires_in}
    authorize(pair)
    return pair


def raw_token_doc() -> dict[str, Any]:
    """The token document exactly as Firestore holds it (token fields encrypted)."""
    snap = token_document().get()
    return snap.to_dict() or {}


def token_doc() -> dict[str, Any]:
    """The token document with access_token and refresh_token decrypted, as the token store sees them."""
    from shared.bling import token_store

    doc, settings = raw_token_doc(), current_deps().settings
    if not doc:
        return doc
    return {**doc, **token_store.decrypted_tokens(doc, settings.bling_token_key, settings.firestore_prefix,
                                                  DEFAULT_ACCOUNT)}


def log_lines(captured: str) -> list[dict[str, Any]]:
    lines = []
    for raw in captured.splitlines():
        raw = raw.strip()
        if raw.startswith("{"):
            with contextlib.suppress(ValueError):
                lines.append(json.loads(raw))
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
    from shared.deps import Deps

    store = Deps.from_environment().account(DEFAULT_ACCOUNT).token_store
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


class TokenEndpoint:
    """A real HTTP server in front of the token endpoint: forwards each POST to `upstream` (the sandbox) after an
    optional per-call delay of the ANSWER (the request reaches upstream at once, as a slow network would), or
    answers `fail_status` itself. Counts POSTs with their arrival times; BLING_TOKEN_URL is pointed at it."""

    def __init__(self, upstream: str = "", fail_status: int = 0, answer_delays: list[float] | None = None):
        import http.server
        import time
        import urllib.error
        import urllib.request

        self.upstream, self.fail_status = upstream, fail_status
        self.answer_delays = list(answer_delays or [])
        self.arrivals: list[float] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with owner._lock:
                    owner.arrivals.append(time.monotonic())
                    delay = owner.answer_delays.pop(0) if owner.answer_delays else 0.0
                if owner.fail_status:
                    status, payload = owner.fail_status, b"<html><body>Service Unavailable</body></html>"
                else:
                    request = urllib.request.Request(owner.upstream, data=body, method="POST", headers={
                        k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")})
                    try:
                        with urllib.request.urlopen(request, timeout=30) as answer:
                            status, payload = answer.status, answer.read()
                    except urllib.error.HTTPError as refused:
                        status, payload = refused.code, refused.read()
                time.sleep(delay)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass  # the client gave up first

            def log_message(self, *args):
                pass

        self._lock = threading.Lock()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/oauth/token"
        set_env(BLING_TOKEN_URL=self.url)

    def max_calls_in_60s(self) -> int:
        """The most POSTs in any 60 s, counted as the sandbox counts its own token calls."""
        from local.sandbox.ratelimit import max_in_window

        with self._lock:
            return max_in_window(list(self.arrivals), 60.0)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class FakeApi:
    """A Bling-compatible API server for answers the sandbox does not give: `answer(n)` (n = 1, 2, ... for each
    GET) returns (status, JSON body bytes, extra headers). BLING_API_BASE is pointed at it; arrivals are kept."""

    def __init__(self, answer: Callable[[int], tuple[int, bytes, dict[str, str]]]):
        import http.server
        import time

        self.arrivals: list[float] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                owner.arrivals.append(time.monotonic())
                status, body, headers = answer(len(owner.arrivals))
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        set_env(BLING_API_BASE=f"http://127.0.0.1:{self._server.server_address[1]}/Api/v3")

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
