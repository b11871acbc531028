"""The account limit: 3 accepted requests in any second, across endpoints, and Bling's 429 body."""
from __future__ import annotations

import concurrent.futures
import time

import requests

from local.sandbox.ratelimit import AccountLimiter, max_in_window
from tests.integration.sandbox.helpers import Api

SECOND_BODY = {"error": {"type": "TOO_MANY_REQUESTS", "message": "Limite de requisições atingido.",
                         "description": "O limite de requisições por segundo foi atingido, "
                                        "tente novamente mais tarde.",
                         "limit": 3, "period": "second"}}


def test_429_body_and_limit_across_endpoints(make_server):
    server = make_server()
    api = Api(server)
    truth = server.truth()
    contact_id = next(iter(truth["contacts"]))
    form_id = next(iter(truth["payment_forms"]))
    statuses = [api.get("/nfe").status_code, api.get(f"/contatos/{contact_id}").status_code,
                api.get(f"/formas-pagamentos/{form_id}").status_code]
    r = api.get("/produtos")
    assert statuses == [200, 200, 200]
    assert r.status_code == 429 and r.json() == SECOND_BODY


def test_hammering_never_gets_more_than_rate(make_server):
    server = make_server(rate_per_s=3)
    api = Api(server)

    def hit(_: int) -> int:
        return requests.get(server.api_base + "/nfe", headers={"Authorization": f"Bearer {api.token}"},
                            timeout=5).status_code

    started = time.monotonic()
    codes: list[int] = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=6) as pool:
        while time.monotonic() - started < 1.6:
            codes += list(pool.map(hit, range(6)))
    stats = server.stats()
    assert len(codes) >= 30
    assert codes.count(429) > 0
    assert stats["max_requests_in_any_1s"] <= 3
    assert stats["responses_429"] == codes.count(429)
    # Two windows at most fit in 1.6 s of arrivals, three with boundary luck; rejected ones never count.
    assert 3 <= codes.count(200) <= 9
    log = requests.get(server.url + "/__admin/requests", timeout=5).json()
    accepted = [r["t_mono"] for r in log if r["counted"]]
    assert max_in_window(accepted, 1.0) <= 3 and len(log) == len(codes)


def test_paced_client_is_never_limited(make_server):
    server = make_server(rate_per_s=3)
    api = Api(server)
    codes = []
    for _ in range(7):
        codes.append(api.get("/nfe").status_code)
        time.sleep(0.36)
    assert codes == [200] * 7
    assert server.stats()["responses_429"] == 0


def test_daily_limit(make_server):
    server = make_server(rate_per_s=1000, daily_limit=3)
    api = Api(server)
    assert [api.get("/nfe").status_code for _ in range(3)] == [200, 200, 200]
    r = api.get("/nfe")
    assert r.status_code == 429
    assert r.json()["error"] == {"type": "TOO_MANY_REQUESTS", "message": "Limite de requisições atingido.",
                                 "description": "O limite de requisições por dia foi atingido, "
                                                "tente novamente amanhã.",
                                 "limit": 3, "period": "day"}


def test_config_changes_rate_at_runtime(make_server):
    server = make_server(rate_per_s=1)
    api = Api(server)
    assert [api.get("/nfe").status_code for _ in range(2)] == [200, 429]
    requests.post(server.url + "/__admin/config", json={"rate_per_s": 100}, timeout=5)
    time.sleep(1.0)
    assert [api.get("/nfe").status_code for _ in range(5)] == [200] * 5


def test_limiter_unit():
    lim = AccountLimiter(3, 100)
    assert [lim.try_acquire(t, "d") for t in (0.0, 0.1, 0.2, 0.3, 0.99)] == [None, None, None, "second", "second"]
    assert lim.try_acquire(1.0, "d") is None  # the first one left the window
    slow = AccountLimiter(0.5, 100)  # one request every 2 s
    assert [slow.try_acquire(t, "d") for t in (0.0, 1.9, 2.0)] == [None, "second", None]


def test_stats_shape(make_server):
    server = make_server(rate_per_s=1000)
    api = Api(server)
    api.get("/nfe")
    api.get("/nope")
    stats = requests.get(server.url + "/__admin/stats", timeout=5).json()
    for key in ("requests_total", "requests_by_kind", "responses_by_status", "responses_429", "token_calls",
                "token_calls_max_in_60s", "ip_blocked", "max_requests_in_any_1s", "max_errors_in_any_10s",
                "max_requests_in_any_10s", "first_request_at", "last_request_at"):
        assert key in stats
    assert stats["requests_total"] == 2 and stats["requests_by_kind"]["other"] == 1
    assert stats["responses_by_status"] == {"200": 1, "404": 1}
    assert stats["ip_blocked"] is False
    requests.post(server.url + "/__admin/reset_stats", timeout=5)
    assert requests.get(server.url + "/__admin/stats", timeout=5).json()["requests_total"] == 0
