"""HTTP plumbing shared by the API client and the token endpoint: the pooled session (one per process, held by
shared.deps.Deps, renewed after a missed deadline), Bling's error bodies, and GETs with a total deadline.

requests' `timeout` bounds each socket operation, not the request: a server that sends a byte now and then, or
a keep-alive connection that hangs after its headers, holds the caller far longer than the number says.
get_within() runs the request in a daemon thread and waits at most the deadline for the whole answer, body
included; on a miss the caller gets DeadlineExceeded and renews the session (RenewableSession), so the retry opens a
fresh connection instead of queueing behind (or reusing) the hung one. The abandoned thread reads on with the same
bounds and checks the deadline between chunks, so it ends soon after, closing its connection."""
from __future__ import annotations

import decimal
import json
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from shared.bling.errors import BlingError


def new_session() -> Any:
    import requests
    from requests.adapters import HTTPAdapter

    s = requests.Session()
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=32, max_retries=0)
    s.mount("https://", adapter)
    s.mount("http://", adapter)
    return s


class RenewableSession:
    """The process's pooled session, replaced by a new pool after a missed deadline: the hung connection stays with
    the abandoned reader, and the retry (and every request after it) gets fresh connections."""

    def __init__(self, factory: Callable[[], Any] = new_session):
        self._factory = factory
        self._lock = threading.Lock()
        self._current = factory()

    @property
    def current(self) -> Any:
        with self._lock:
            return self._current

    def renew(self, stale: Any) -> None:
        """Replace `stale` (the session a missed request used); a no-op when another thread already did."""
        with self._lock:
            if self._current is stale:
                self._current = self._factory()

    def post(self, url: str, **kwargs: Any) -> Any:
        return self.current.post(url, **kwargs)


class DeadlineExceeded(Exception):
    """No complete answer within the request's total deadline."""


_CHUNK = 64 * 1024


def get_within(http: Any, url: str, deadline_s: float, **kwargs: Any) -> tuple[int, Mapping[str, str], bytes]:
    """GET url through `http` (a requests.Session or alike): (status, headers, whole body), all within deadline_s
    from now, or DeadlineExceeded. requests' own exceptions (connection refused, reset) are raised as they are."""
    done = threading.Event()
    box: dict[str, Any] = {}
    until = time.monotonic() + deadline_s

    def work() -> None:
        try:
            box["answer"] = _read_whole(http, url, until, deadline_s, kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller as it is
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=work, name="bling-http", daemon=True).start()
    if not done.wait(deadline_s):
        raise DeadlineExceeded(f"no complete answer within {deadline_s:g} s")
    if "error" in box:
        raise box["error"]
    answer: tuple[int, Mapping[str, str], bytes] = box["answer"]
    return answer


def _read_whole(http: Any, url: str, until: float, deadline_s: float,
                kwargs: dict[str, Any]) -> tuple[int, Mapping[str, str], bytes]:
    response = http.get(url, stream=True, timeout=(deadline_s, deadline_s), **kwargs)
    try:
        chunks = []
        for chunk in response.iter_content(_CHUNK):
            if time.monotonic() > until:
                raise DeadlineExceeded("deadline passed while reading the body")  # the caller has given up
            chunks.append(chunk)
        return response.status_code, response.headers, b"".join(chunks)
    finally:
        response.close()


def parse_json(body: bytes) -> Any:
    """The JSON value of body with exact decimals, or None when it is not (complete) JSON."""
    try:
        return json.loads(body.decode("utf-8"), parse_float=decimal.Decimal)
    except (UnicodeDecodeError, ValueError):
        return None


def error_from_response(status: int, parsed: Any, path: str) -> BlingError:
    """A BlingError carrying Bling's {"error": {type, message, description, fields}} (or what there is of it)."""
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(error, dict):
        return BlingError(status, str(error.get("type") or ""), str(error.get("message") or ""),
                          str(error.get("description") or ""), error.get("fields") or [], path)
    if isinstance(error, str):  # RFC 6749 shape {"error": "invalid_grant", "error_description": ...}
        return BlingError(status, error, error, str(parsed.get("error_description") or ""), [], path)
    return BlingError(status, "", "", "" if parsed is not None else "non-JSON body", [], path)

