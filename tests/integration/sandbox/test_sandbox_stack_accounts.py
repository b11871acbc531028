"""local.stack.sandbox.Sandbox with several accounts, as the local stack, the demo and the e2e tests drive it: as a
child process (the stack's default) and in-process, every admin helper scoped by `account=`."""
from __future__ import annotations

import pytest
import requests

from local.stack.sandbox import AccountSpec, Sandbox


def nfe_status(sandbox: Sandbox, token: str) -> int:
    return requests.get(sandbox.api_base + "/nfe", headers={"Authorization": f"Bearer {token}"},
                        timeout=10).status_code


@pytest.fixture(params=["subprocess", "in_process"])
def sandbox(request, tmp_path):
    (tmp_path / "logs").mkdir()
    box = Sandbox(tmp_path, rate_per_s=1000, in_process=request.param == "in_process",
                  accounts=[AccountSpec("loja-a", "small", seed=5, daily_limit=50),
                            AccountSpec("loja-b", "demo", seed=6, rate_per_s=3)])
    box.start()
    yield box
    box.stop()


def test_accounts_through_the_stack_wrapper(sandbox: Sandbox):
    assert sandbox.account_names() == ["loja-a", "loja-b"]
    truth_a, truth_b = sandbox.truth(account="loja-a"), sandbox.truth(account="loja-b")
    assert (truth_a["seed"], truth_b["seed"]) == (5, 6) and sandbox.truth() == truth_a
    assert not set(truth_a["nfe"]) & set(truth_b["nfe"])
    assert sandbox.configure({}, account="loja-b")["rate_per_s"] == 3
    assert sandbox.configure({}, account="loja-a")["daily_limit"] == 50
    a, b = sandbox.issue_tokens(account="loja-a"), sandbox.issue_tokens(account="loja-b")
    first_b = requests.get(sandbox.api_base + "/nfe", headers={"Authorization": f"Bearer {b['access_token']}"},
                           timeout=10).json()["data"]
    assert {str(n["id"]) for n in first_b} <= set(truth_b["nfe"])
    assert [sandbox.stats(account=n)["requests_total"] for n in ("loja-a", "loja-b")] == [0, 1]

    sandbox.faults({"status_5xx_share": 1.0}, account="loja-b")
    assert nfe_status(sandbox, b["access_token"]) in (500, 502, 503) and nfe_status(sandbox, a["access_token"]) == 200
    sandbox.faults({}, account="loja-b")

    assert sandbox.exhaust_daily_limit(account="loja-a")["daily_used"] == 50
    assert nfe_status(sandbox, a["access_token"]) == 429 and nfe_status(sandbox, b["access_token"]) == 200
    sandbox.reset_daily_limit(account="loja-a")
    assert nfe_status(sandbox, a["access_token"]) == 200

    sandbox.revoke(account="loja-a")
    assert nfe_status(sandbox, a["access_token"]) == 401 and nfe_status(sandbox, b["access_token"]) == 200
    stats = sandbox.stats()
    assert set(stats["accounts"]) == {"loja-a", "loja-b"}
    assert stats["requests_total"] == sum(s["requests_total"] for s in stats["accounts"].values())
    sandbox.reset_stats(account="loja-b")
    assert sandbox.stats(account="loja-b")["requests_total"] == 0 and sandbox.stats()["requests_total"] > 0


def test_one_account_by_default(tmp_path):
    (tmp_path / "logs").mkdir()
    box = Sandbox(tmp_path, profile="small", seed=8, in_process=True)
    box.start()
    try:
        assert box.account_names() == ["default"]
        assert box.truth(account="default") == box.truth() and box.truth()["seed"] == 8
    finally:
        box.stop()
