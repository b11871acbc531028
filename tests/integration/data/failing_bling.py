"""A Bling that keeps failing for a few records only: an HTTP proxy in front of the sandbox.

The sandbox's faults are drawn per request, whatever the record; the per-record failure paths need the opposite:
GET /nfe/{id} (or /contatos/{id}) of chosen ids answering 503 (or 429, or truncated JSON) on every request while
every other request reaches the sandbox unchanged. The pipeline talks to the proxy over real HTTP with its real
client (retries included), so what is tested is the code path a real outage of one record takes.
"""
from __future__ import annotations

import http.server
import os
import threading
import urllib.parse
from collections.abc import Iterator

import requests

from local.sandbox.faults import html_body

# What a failing path answers: (status, content type, body).
ANSWERS = {
    503: (503, "text/html", html_body(503)),
    429: (429, "application/json",
          b'{"error":{"type":"TOO_MANY_REQUESTS","message":"limite","description":"por segundo","period":"second"}}'),
    "truncated": (200, "application/json", b'{"data":{"id":1,"numero":"12'),
}


class FailingBling:
    """proxy.fail("/nfe/123", 503); BLING_API_BASE points at the proxy while it runs (see start())."""

    def __init__(self, upstream: str):
        parts = urllib.parse.urlsplit(upstream.rstrip("/"))
        self.origin, self.prefix = f"{parts.scheme}://{parts.netloc}", parts.path  # prefix: /Api/v3
        self.failing: dict[str, object] = {}
        self.answered: dict[str, int] = {}  # failing path -> failed answers given
        self._lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                proxy._serve(self)

            def log_message(self, *args) -> None:  # quiet
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{self.prefix}"

    def fail(self, path: str, answer: object = 503) -> None:
        with self._lock:
            self.failing[path] = answer

    def heal(self) -> None:
        with self._lock:
            self.failing.clear()

    def _serve(self, request: http.server.BaseHTTPRequestHandler) -> None:
        path = request.path.split("?", 1)[0][len(self.prefix):]
        with self._lock:
            answer = self.failing.get(path)
            if answer is not None:
                self.answered[path] = self.answered.get(path, 0) + 1
        if answer is not None:
            status, content_type, body = ANSWERS[answer]
        else:
            upstream = requests.get(self.origin + request.path,
                                    headers={k: v for k, v in request.headers.items() if k.lower() != "host"},
                                    timeout=30)
            status, content_type, body = (upstream.status_code, upstream.headers.get("Content-Type", ""),
                                          upstream.content)
        request.send_response(status)
        request.send_header("Content-Type", content_type)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    def start(self) -> FailingBling:
        self._thread.start()
        os.environ["BLING_API_BASE"] = self.api_base
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def running(upstream: str) -> Iterator[FailingBling]:
    proxy = FailingBling(upstream).start()
    try:
        yield proxy
    finally:
        proxy.stop()
