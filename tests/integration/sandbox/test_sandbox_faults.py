"""Each fault mode does what it says, only on API endpoints, and is reproducible."""
from __future__ import annotations

import json
import time

import pytest
import requests

from tests.integration.sandbox.helpers import Api


def faults(api: Api, **spec) -> None:
    api.admin("faults", spec)


def statuses(api: Api, n: int, path: str = "/nfe") -> list[int]:
    return [api.get(path).status_code for _ in range(n)]


def test_5xx_share_answers_html(api: Api):
    faults(api, status_5xx_share=1.0)
    r = api.get("/nfe")
    assert r.status_code in (500, 502, 503)
    assert r.headers["Content-Type"].startswith("text/html") and "<html>" in r.text
    # Admin is never affected.
    assert requests.get(api.server.url + "/__admin/stats", timeout=5).status_code == 200
    faults(api, status_5xx_share=0.5, seed=1)
    first = statuses(api, 20)
    faults(api, status_5xx_share=0.5, seed=1)
    assert statuses(api, 20) == first  # same seed, same faults
    assert 200 in first and set(first) - {200}
    faults(api)
    assert statuses(api, 3) == [200, 200, 200]


def test_storm_429_every_n(api: Api):
    faults(api, storm_429={"every_n": 5, "length": 2})
    got = statuses(api, 10)
    assert got == [200, 200, 200, 429, 429] * 2
    r = api.get("/nfe")  # 11th: first of a new cycle
    assert r.status_code == 200
    faults(api, storm_429={"every_n": 2, "length": 1})
    api.get("/nfe")
    body = api.get("/nfe").json()
    assert body["error"]["type"] == "TOO_MANY_REQUESTS" and body["error"]["period"] == "second"


def test_storm_429_share(api: Api):
    faults(api, storm_429=1.0)
    assert statuses(api, 3) == [429] * 3


def test_slow_share(api: Api):
    faults(api, slow_share=1.0, slow_s=0.3)
    started = time.monotonic()
    assert api.get("/nfe").status_code == 200
    assert time.monotonic() - started >= 0.3
    with pytest.raises(requests.exceptions.ReadTimeout):
        api.session.get(api.server.api_base + "/nfe", timeout=0.1)


def test_reset_share(api: Api):
    faults(api, reset_share=1.0)
    with pytest.raises(requests.exceptions.ConnectionError):
        api.get("/nfe")
    faults(api)
    assert api.get("/nfe").status_code == 200  # the session reconnects
    assert api.admin("stats")["responses_by_status"].get("0") == 1


def test_truncated_json(api: Api):
    faults(api, truncated_json_share=1.0)
    r = api.get("/nfe")
    assert r.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(r.text)
    # Errors are never truncated (only 200 bodies are).
    assert api.get("/nfe/1").json()["error"]["type"] == "RESOURCE_NOT_FOUND"


def test_page_overlap(api: Api):
    truth = api.server.truth()
    faults(api, page_overlap=2)
    p1 = [n["id"] for n in api.data("/nfe", {"limite": 5, "pagina": 1})]
    p2 = [n["id"] for n in api.data("/nfe", {"limite": 5, "pagina": 2})]
    assert len(p1) == len(p2) == 5 and p2[:2] == p1[-2:]
    seen, page = [], 1
    while chunk := api.data("/nfe", {"limite": 5, "pagina": page}):
        seen += [n["id"] for n in chunk]
        page += 1
    assert len(seen) > len(set(seen))
    assert set(seen) == set(truth["outgoing_ids"]) - set(truth["cancelled_ids"])  # nothing lost


def test_page_oversize(api: Api):
    faults(api, page_oversize=3)
    p1 = [n["id"] for n in api.data("/nfe", {"limite": 5, "pagina": 1})]
    p2 = [n["id"] for n in api.data("/nfe", {"limite": 5, "pagina": 2})]
    assert len(p1) == 8 and p1[5:] == p2[:3]
    faults(api, page_oversize=True)
    assert len(api.data("/nfe", {"limite": 5})) == 8


def test_expire_token_after_n(api: Api):
    faults(api, expire_token_after_n=2)
    assert statuses(api, 3) == [200, 200, 401]
    assert api.get("/nfe").json()["error"]["type"] == "invalid_token"
    fresh = Api(api.server)
    assert fresh.get("/nfe").status_code == 200  # one-shot: new tokens keep working


def test_faults_do_not_touch_oauth(api: Api):
    faults(api, status_5xx_share=1.0, reset_share=1.0)
    r = requests.get(api.server.authorize_url, params={"response_type": "code", "client_id": "sandbox-client"},
                     allow_redirects=False, timeout=5)
    assert r.status_code == 302


def test_unknown_fault_key_is_rejected(api: Api):
    r = requests.post(api.server.url + "/__admin/faults", json={"nope": 1}, timeout=5)
    assert r.status_code == 400
    assert api.admin("faults") == {}
