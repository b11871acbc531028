"""The two sandbox fault modes the issue-13 fault run needs: a hang of N seconds, and token expiry every N s."""
from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests

from local.sandbox.dataset import build_profile
from local.sandbox.server import SandboxServer
from tests.integration.sandbox.helpers import Api


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    srv = SandboxServer(build_profile("small", seed=7), rate_per_s=1000).start()
    yield srv
    srv.stop()


@pytest.fixture
def api(server: SandboxServer) -> Iterator[Api]:
    server.set_faults()
    client = Api(server)
    yield client
    server.set_faults()
    client.session.close()


def test_hang_holds_the_request_then_closes_without_an_answer(api: Api) -> None:
    api.admin("faults", {"hang_share": 1.0, "hang_s": 0.6})
    started = time.monotonic()
    with pytest.raises(requests.exceptions.ConnectionError):
        api.session.get(api.server.api_base + "/nfe", timeout=5)
    assert 0.55 <= time.monotonic() - started < 3
    # A client with a shorter timeout gives up first, as the pipeline's would against a 35 s hang.
    with pytest.raises(requests.exceptions.ReadTimeout):
        api.session.get(api.server.api_base + "/nfe", timeout=0.2)
    stats = requests.get(api.server.url + "/__admin/stats", timeout=5).json()
    assert stats["responses_by_status"].get("0", 0) >= 1


def test_hang_share_is_reproducible_and_leaves_older_fault_sequences_alone(api: Api) -> None:
    def run(**spec: object) -> list[int]:
        api.admin("faults", {"seed": 3, **spec})
        out = []
        for _ in range(40):
            try:
                out.append(api.session.get(api.server.api_base + "/nfe", timeout=5).status_code)
            except requests.exceptions.ConnectionError:
                out.append(0)
        return out

    hangs = run(hang_share=0.2, hang_s=0.01)
    assert hangs == run(hang_share=0.2, hang_s=0.01) and 0 < hangs.count(0) < 40
    # The 5xx sequence of a seed is the same whether hangs are on or off (hangs draw from their own generator).
    only_5xx = run(status_5xx_share=0.3)
    both = run(status_5xx_share=0.3, hang_share=0.2, hang_s=0.01)
    assert [s for s, b in zip(only_5xx, both) if b != 0] == [b for b in both if b != 0]


def test_token_expires_every_n_seconds(api: Api) -> None:
    api.admin("faults", {"expire_token_every_s": 0.5})
    assert api.get("/nfe").status_code == 200
    time.sleep(0.6)
    assert api.get("/nfe").status_code == 401  # the first call after the period
    fresh = Api(api.server)
    assert fresh.get("/nfe").status_code == 200  # a new token works until the next period ends
    time.sleep(0.6)
    assert fresh.get("/nfe").status_code == 401
