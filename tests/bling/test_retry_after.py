"""A server that sends Retry-After on a 429 is waited for at least that long (Bling documents no such header,
but a Bling-compatible server or a proxy in front of Bling may send one)."""
from __future__ import annotations

import http.server
import threading
import time

from shared.bling.client import BlingClient


class _Tokens:
    """Only the access token matters here; token refresh is covered in test_token_store.py."""

    def get_valid_access_token(self) -> str:
        return "token-for-retry-after-test"


def test_retry_after_is_honoured(firestore_env, monkeypatch):
    arrivals: list[float] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            arrivals.append(time.monotonic())
            if len(arrivals) == 1:
                body = (b'{"error":{"type":"TOO_MANY_REQUESTS","message":"Limite","description":"x",'
                        b'"limit":3,"period":"second"}}')
                self.send_response(429)
                self.send_header("Retry-After", "2")
            else:
                body = b'{"data":[]}'
                self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("BLING_API_BASE", f"http://127.0.0.1:{server.server_port}/Api/v3")
        monkeypatch.setenv("BLING_RATE_LEDGER", "local")
        from shared import config
        config.reset_settings_cache()
        assert BlingClient(token_store=_Tokens()).get("/nfe") == {"data": []}
    finally:
        server.shutdown()
    assert len(arrivals) == 2
    assert arrivals[1] - arrivals[0] >= 2.0
