"""`python -m local.sandbox` starts, writes its port, serves, and exits cleanly on SIGTERM/SIGINT."""
from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest
import requests

ROOT = pathlib.Path(__file__).resolve().parents[3]


def start(tmp_path: pathlib.Path, *extra: str) -> tuple[subprocess.Popen, int]:
    port_file = tmp_path / "port"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "local.sandbox", "--profile", "small", "--seed", "3",
                             "--port", "0", "--port-file", str(port_file), *extra],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 15
    while not port_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"sandbox did not start: {proc.communicate()}")
        time.sleep(0.05)
    return proc, int(port_file.read_text().strip())


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_cli_serves_and_stops(tmp_path, sig):
    proc, port = start(tmp_path, "--rate", "50", "--client-id", "cli-id", "--client-secret", "cli-secret",
                       "--redirect-uri", "http://localhost:9999/cb", "--latency-ms", "1")
    try:
        base = f"http://127.0.0.1:{port}"
        pair = requests.post(base + "/__admin/issue_tokens", json={}, timeout=5).json()
        r = requests.get(base + "/Api/v3/nfe", headers={"Authorization": f"Bearer {pair['access_token']}"}, timeout=5)
        assert r.status_code == 200 and r.json()["data"]
        auth = requests.get(base + "/Api/v3/oauth/authorize", params={"response_type": "code", "client_id": "cli-id"},
                            allow_redirects=False, timeout=5)
        assert auth.headers["Location"].startswith("http://localhost:9999/cb?code=")
        config = requests.get(base + "/__admin/config", timeout=5).json()
        assert config["rate_per_s"] == 50 and config["latency_s"] == 0.001
    finally:
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "listening on" in out and "stopped" in out
    assert err == ""  # quiet: no per-request logging without --verbose


def test_cli_serves_several_accounts(tmp_path):
    """Repeated --account: each company its own data set and rate; what it leaves out comes from the flags."""
    proc, port = start(tmp_path, "--rate", "50", "--account", "loja-a",
                       "--account", "loja-b,profile=demo,seed=9,rate=7")
    try:
        base = f"http://127.0.0.1:{port}"
        assert requests.get(base + "/__admin/accounts", timeout=5).json() == {"accounts": ["loja-a", "loja-b"],
                                                                                "default": "loja-a"}
        truth_a = requests.get(base + "/__admin/accounts/loja-a/truth", timeout=5).json()
        truth_b = requests.get(base + "/__admin/accounts/loja-b/truth", timeout=5).json()
        assert (truth_a["seed"], len(truth_a["outgoing_ids"])) == (3, 24)  # --profile small --seed 3
        assert truth_b["seed"] == 9 and len(truth_b["outgoing_ids"]) == 99  # demo
        config_b = requests.get(base + "/__admin/accounts/loja-b/config", timeout=5).json()
        assert config_b["rate_per_s"] == 7
        assert requests.get(base + "/__admin/config", timeout=5).json()["rate_per_s"] == 50
        pair = requests.post(base + "/__admin/accounts/loja-b/issue_tokens", json={}, timeout=5).json()
        r = requests.get(base + "/Api/v3/nfe", headers={"Authorization": f"Bearer {pair['access_token']}"}, timeout=5)
        assert {n["id"] for n in r.json()["data"]} <= set(map(int, truth_b["nfe"]))
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "loja-a: seed 3" in out and "loja-b: seed 9" in out


def test_cli_refuses_a_bad_account(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "local.sandbox", "--account", "Loja_A"], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "Loja_A" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "local.sandbox", "--account", "loja-a,colour=blue"], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "colour" in proc.stderr
