"""The total deadline of one Bling request (shared.bling.http.get_within), with fakes of the HTTP session:
a call that never answers, a body trickled slowly, an answer in time, and errors passed through."""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from shared.bling import http


class FakeResponse:
    def __init__(self, chunks: list[bytes], pause_s: float = 0.0, status: int = 200):
        self.status_code, self.headers = status, {"Retry-After": "3"}
        self._chunks, self._pause, self.closed = chunks, pause_s, False

    def iter_content(self, _size: int) -> Iterator[bytes]:
        for chunk in self._chunks:
            time.sleep(self._pause)
            yield chunk

    def close(self) -> None:
        self.closed = True


class FakeSession:
    def __init__(self, response: FakeResponse | None = None, block: threading.Event | None = None,
                 error: Exception | None = None):
        self.response, self.block, self.error = response, block, error
        self.calls: list[dict[str, Any]] = []

    def get(self, url: str, **kwargs: Any) -> FakeResponse:
        self.calls.append({"url": url, **kwargs})
        if self.block is not None:
            self.block.wait(5)
        if self.error is not None:
            raise self.error
        assert self.response is not None
        return self.response


def test_an_answer_in_time_is_returned_whole_and_its_response_closed():
    response = FakeResponse([b'{"data"', b": []}"])
    session = FakeSession(response)

    status, headers, body = http.get_within(session, "http://bling/nfe", 1.0, params={"pagina": "1"})

    assert (status, headers["Retry-After"], body) == (200, "3", b'{"data": []}')
    assert response.closed
    call, = session.calls
    assert call["stream"] is True and call["params"] == {"pagina": "1"} and call["timeout"] == (1.0, 1.0)


def test_a_call_that_never_answers_is_given_up_at_the_deadline():
    release = threading.Event()
    started = time.monotonic()

    with pytest.raises(http.DeadlineExceeded):
        http.get_within(FakeSession(FakeResponse([b"{}"]), block=release), "http://bling/nfe", 0.3)

    assert 0.3 <= time.monotonic() - started < 0.6
    release.set()


def test_the_deadline_counts_the_whole_body_not_each_chunk():
    trickle = FakeResponse([b"{", b'"data"', b": ", b"[]", b"}"] * 4, pause_s=0.1)  # 2 s in all, 0.1 s a chunk
    started = time.monotonic()

    with pytest.raises(http.DeadlineExceeded):
        http.get_within(FakeSession(trickle), "http://bling/nfe", 0.5)

    assert time.monotonic() - started < 0.8
    time.sleep(0.3)  # the abandoned reader notices the deadline at its next chunk and closes the response
    assert trickle.closed


def test_errors_of_the_session_reach_the_caller_as_they_are():
    with pytest.raises(ConnectionResetError):
        http.get_within(FakeSession(error=ConnectionResetError("reset")), "http://bling/nfe", 1.0)


def test_renewing_the_session_a_missed_request_used_gives_every_later_request_a_new_pool():
    built: list[FakeSession] = []

    def factory() -> FakeSession:
        built.append(FakeSession(FakeResponse([b"{}"])))
        return built[-1]

    pooled = http.RenewableSession(factory)
    hung = pooled.current
    pooled.renew(hung)
    assert pooled.current is built[1] is not hung, "the next request builds a new pool"
    pooled.renew(hung)  # a second thread that saw the same miss: the new pool is kept
    assert pooled.current is built[1] and len(built) == 2
