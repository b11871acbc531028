"""Issue 13: a Bling call that hangs costs seconds, not minutes.

A request has one TOTAL deadline (connect + the whole body), far below the 30 s the client used to allow per
socket read; after a timeout the retry goes out on a fresh connection, and a slow but legitimate page within
the deadline is still read. Real HTTP: the sandbox's hang and slow faults, and a small socket server of our own
for what the sandbox cannot do (a body trickled byte by byte, a keep-alive connection that hangs)."""
from __future__ import annotations

import contextlib
import dataclasses
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from shared import config
from shared.bling.client import count_calls
from shared.bling.errors import BlingRetryableError
from shared.bling.retry_policy import POLICY, Outcome, Rule, scaled
from tests.integration.process_deps import new_client

FAST = scaled(POLICY, 0.02)
NO_RETRY = {**POLICY, Outcome.TIMEOUT: Rule(max_attempts=1), Outcome.CONNECTION: Rule(max_attempts=1)}
_OK = b'{"data": []}'


def _ok_response() -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(_OK), _OK)


def _read_request(conn: socket.socket) -> bool:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return False
        data += chunk
    return True


@dataclasses.dataclass
class RawServer:
    url: str
    connections: list[int]


@pytest.fixture
def raw_server() -> Iterator[Callable[[Callable[[socket.socket, int], None]], RawServer]]:
    """raw_server(serve): a local HTTP server whose connection number n is handled by serve(conn, n)."""
    servers: list[socketserver.ThreadingTCPServer] = []

    def start(serve: Callable[[socket.socket, int], None]) -> RawServer:
        connections: list[int] = []

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                connections.append(len(connections) + 1)
                with contextlib.suppress(OSError):
                    serve(self.request, len(connections))

        server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        servers.append(server)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return RawServer(f"http://127.0.0.1:{server.server_address[1]}", connections)

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_a_hung_call_is_given_up_well_before_30_s_with_the_default_settings(bling):
    bling.set_faults(hang_share=1.0, hang_s=35)
    started = time.monotonic()

    with pytest.raises(BlingRetryableError) as raised:
        new_client(policy=NO_RETRY).get("/nfe", {"pagina": 1})

    held = time.monotonic() - started
    assert raised.value.error_type == "timeout"
    assert held <= config.get_settings().bling_http_timeout_s + 1.0 <= 11.0, f"held {held:.1f} s"


def _at(monkeypatch: pytest.MonkeyPatch, url: str, deadline_s: float) -> None:
    """The client's composition root built for this Bling base URL and deadline (they are settings)."""
    monkeypatch.setenv("BLING_API_BASE", url)
    monkeypatch.setenv("BLING_HTTP_TIMEOUT_S", str(deadline_s))


def test_the_deadline_is_total_a_body_trickled_byte_by_byte_does_not_extend_it(bling, raw_server, monkeypatch):
    body = b'{"data": [' + b" " * 30 + b"]}"

    def trickle(conn: socket.socket, _n: int) -> None:
        _read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body))
        for byte in body:  # 0.2 s per byte: each read far within a 1 s read timeout, 8.4 s in all
            time.sleep(0.2)
            conn.sendall(bytes([byte]))

    server = raw_server(trickle)
    _at(monkeypatch, server.url, 1.0)
    started = time.monotonic()

    with pytest.raises(BlingRetryableError) as raised:
        new_client(policy=NO_RETRY).get("/nfe")

    held = time.monotonic() - started
    assert raised.value.error_type == "timeout" and held < 1.6, f"held {held:.1f} s for a 1 s deadline"


def test_after_a_hung_keep_alive_connection_the_retry_uses_a_fresh_connection(bling, raw_server, monkeypatch):
    def first_answers_then_hangs(conn: socket.socket, _n: int) -> None:
        if _read_request(conn):
            conn.sendall(_ok_response())  # keep-alive: the pool keeps this connection for the next call
        if _read_request(conn):
            time.sleep(30)  # the second request on this connection hangs

    server = raw_server(first_answers_then_hangs)
    _at(monkeypatch, server.url, 1.0)
    client = new_client(policy=FAST)
    assert client.get("/nfe") == {"data": []}
    started = time.monotonic()

    with count_calls() as calls:
        body = client.get("/nfe")

    assert body == {"data": []}
    assert calls.requests == 2 and len(server.connections) == 2, "retried once, on a new connection"
    assert time.monotonic() - started < 2.5


def test_a_slow_but_legitimate_full_page_within_the_deadline_is_read(bling):
    deadline = config.get_settings().bling_http_timeout_s
    bling.set_faults(slow_share=1.0, slow_s=round(deadline * 0.6, 2))

    with count_calls() as calls:
        body = new_client(policy=NO_RETRY).get("/nfe", {"pagina": 1, "limite": 100})

    assert calls.requests == 1 and len(body["data"]) > 0


