"""A server that sends Retry-After on a 429 is waited for at least that long (Bling documents no such header,
but a Bling-compatible server or a proxy in front of Bling may send one)."""
from __future__ import annotations

from tests.integration.bling.helpers import FakeApi
from tests.integration.process_deps import new_client


class _Tokens:
    """Only the access token matters here; token refresh is covered in test_token_store.py."""

    def get_valid_access_token(self) -> str:
        return "token-for-retry-after-test"


class _NoBudget:
    """The account budget is not what this test measures: every request may go at once."""

    def acquire(self) -> None:
        return None


def test_retry_after_is_honoured(firestore_env):
    def answer(n: int) -> tuple[int, bytes, dict[str, str]]:
        if n == 1:
            return 429, (b'{"error":{"type":"TOO_MANY_REQUESTS","message":"Limite","description":"x",'
                         b'"limit":3,"period":"second"}}'), {"Retry-After": "2"}
        return 200, b'{"data":[]}', {}

    server = FakeApi(answer)
    try:
        assert new_client(_Tokens(), budget=_NoBudget()).get("/nfe") == {"data": []}
    finally:
        server.stop()
    arrivals = server.arrivals
    assert len(arrivals) == 2
    assert arrivals[1] - arrivals[0] >= 2.0
