"""The fake Bling API v3 (local.sandbox) for the local stack: `python -m local.sandbox` as a child process, or
SandboxServer in this process; its admin API (truth, stats, faults) for tests and the demo."""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import sys
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self, cast

from local.processes import ManagedProcess, port_is_open, wait_until
from local.stack.base import HOST, REPO_ROOT, ChildProcessComponent

if TYPE_CHECKING:
    from local.sandbox.dataset import Dataset
    from local.sandbox.server import SandboxServer


def load_dataset(profile: str, seed: int = 42) -> Dataset:
    """The sandbox dataset for a named profile (demo, small, history)."""
    from local.sandbox.dataset import build_profile

    return build_profile(profile, seed=seed)


class Sandbox(ChildProcessComponent):
    """The fake Bling API v3: `python -m local.sandbox` as a subprocess (default) or SandboxServer in-process."""

    def __init__(self, run_dir: Path, profile: str = "small", seed: int = 42, rate_per_s: float = 3.0,
                 latency_s: float = 0.0, redirect_uri: str = "", client_id: str | None = None,
                 client_secret: str | None = None, in_process: bool = False, extra_args: Iterable[str] = ()) -> None:
        self.run_dir = Path(run_dir)
        self.profile = profile
        self.seed = seed
        self.rate_per_s = rate_per_s
        self.latency_s = latency_s
        self.redirect_uri = redirect_uri
        self.client_id = client_id or f"local-{secrets.token_hex(6)}"
        self.client_secret = client_secret or secrets.token_urlsafe(24)
        self.in_process = in_process
        self.extra_args = list(extra_args)
        self.process: ManagedProcess | None = None
        self.server: SandboxServer | None = None
        self.url = ""
        self._port_file = self.run_dir / "sandbox.port"

    @property
    def api_base(self) -> str:
        return self.url + "/Api/v3"

    def launch(self) -> Self:
        if self.in_process:
            from local.sandbox.server import SandboxServer

            self.server = SandboxServer(load_dataset(self.profile, self.seed), client_id=self.client_id,
                                        client_secret=self.client_secret, redirect_uri=self.redirect_uri,
                                        rate_per_s=self.rate_per_s, latency_s=self.latency_s)
            self.server.start()
            self.url = self.server.url.rstrip("/")
            return self
        self._port_file.unlink(missing_ok=True)
        argv = [sys.executable, "-m", "local.sandbox", "--profile", self.profile, "--seed", str(self.seed),
                "--rate", str(self.rate_per_s), "--latency-ms", str(int(self.latency_s * 1000)), "--port", "0",
                "--port-file", str(self._port_file), f"--redirect-uri={self.redirect_uri}",
                # `--opt=value`: a generated secret may start with "-" (token_urlsafe), which argparse would
                # otherwise read as an option (one bench run in 64 failed so)
                f"--client-id={self.client_id}", f"--client-secret={self.client_secret}", *self.extra_args]
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"}
        self.process = ManagedProcess("sandbox", argv, self.run_dir / "logs/sandbox.log", env=env,
                                      cwd=REPO_ROOT).start()
        return self

    def wait_ready(self, timeout_s: float = 60) -> None:
        if self.in_process:
            return

        def ready() -> bool:
            text = self._port_file.read_text().strip()
            if not text:
                return False
            port = int(text)
            self.url = f"http://{HOST}:{port}"
            return port_is_open(port)

        wait_until(ready, timeout_s, "Bling sandbox", alive=self._exit_problem)

    def stop(self) -> None:
        if self.server is not None:
            with contextlib.suppress(Exception):
                self.server.stop()
        super().stop()

    def env(self) -> dict[str, str]:
        return {"BLING_API_BASE": self.api_base, "BLING_TOKEN_URL": self.api_base + "/oauth/token",
                "BLING_AUTHORIZE_URL": self.api_base + "/oauth/authorize", "BLING_CLIENT_ID": self.client_id,
                "BLING_CLIENT_SECRET": self.client_secret}

    # -- admin API
    def admin(self, path: str, body: dict[str, Any] | None = None, method: str | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + "/__admin/" + path.lstrip("/"), data=data,
                                         method=method or ("POST" if body is not None else "GET"),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            raw = response.read()
        return json.loads(raw) if raw.strip() else None

    def truth(self) -> dict[str, Any]:
        return cast(dict[str, Any], self.admin("truth"))

    def stats(self) -> dict[str, Any]:
        return cast(dict[str, Any], self.admin("stats"))

    def reset_stats(self) -> None:
        self.admin("reset_stats", {})

    def faults(self, spec: dict[str, Any]) -> Any:
        return self.admin("faults", spec)
