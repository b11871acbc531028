"""The fake Bling API v3 (local.sandbox) for the local stack: `python -m local.sandbox` as a child process, or
SandboxServer in this process; its admin API (truth, stats, faults) for tests and the demo.

Several companies: Sandbox(run_dir, accounts=[AccountSpec("loja-a", "demo", 1), AccountSpec("loja-b", "demo", 2)]);
every admin helper takes `account=` (None: the default, i.e. the first, account; for stats(): every account, with a
per-account breakdown under "accounts")."""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self, cast

from local.processes import ManagedProcess, port_is_open, wait_until
from local.stack.base import HOST, REPO_ROOT, ChildProcessComponent

if TYPE_CHECKING:
    from local.sandbox.accounts import SandboxAccount
    from local.sandbox.dataset import Dataset
    from local.sandbox.server import SandboxServer


def load_dataset(profile: str, seed: int = 42) -> Dataset:
    """The sandbox dataset for a named profile (demo, small, history)."""
    from local.sandbox.dataset import build_profile

    return build_profile(profile, seed=seed)


@dataclasses.dataclass(frozen=True)
class AccountSpec:
    """One company of a multi-account sandbox: its name (a pipeline account slug), data set and limits.

    None takes the Sandbox's value (rate_per_s; daily_limit: the sandbox's --daily-limit, 120,000 by default)."""

    name: str
    profile: str = "small"
    seed: int = 42
    rate_per_s: float | None = None
    daily_limit: int | None = None
    scale: float = 1.0

    def cli_arg(self) -> str:
        """The value of `python -m local.sandbox --account`."""
        parts = [self.name, f"profile={self.profile}", f"seed={self.seed}", f"scale={self.scale}"]
        if self.rate_per_s is not None:
            parts.append(f"rate={self.rate_per_s}")
        if self.daily_limit is not None:
            parts.append(f"daily_limit={self.daily_limit}")
        return ",".join(parts)


class Sandbox(ChildProcessComponent):
    """The fake Bling API v3: `python -m local.sandbox` as a subprocess (default) or SandboxServer in-process.

    One company from profile/seed (the default), or several from `accounts` (profile/seed are then unused)."""

    def __init__(self, run_dir: Path, profile: str = "small", seed: int = 42, rate_per_s: float = 3.0,
                 latency_s: float = 0.0, redirect_uri: str = "", client_id: str | None = None,
                 client_secret: str | None = None, in_process: bool = False, extra_args: Iterable[str] = (),
                 accounts: Sequence[AccountSpec] | None = None) -> None:
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
        self.accounts = list(accounts or [])
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

            self.server = SandboxServer(None if self.accounts else load_dataset(self.profile, self.seed),
                                        client_id=self.client_id, client_secret=self.client_secret,
                                        redirect_uri=self.redirect_uri, rate_per_s=self.rate_per_s,
                                        latency_s=self.latency_s, accounts=self._sandbox_accounts())
            self.server.start()
            self.url = self.server.url.rstrip("/")
            return self
        self._port_file.unlink(missing_ok=True)
        argv = [sys.executable, "-m", "local.sandbox", "--profile", self.profile, "--seed", str(self.seed),
                "--rate", str(self.rate_per_s), "--latency-ms", str(int(self.latency_s * 1000)), "--port", "0",
                "--port-file", str(self._port_file), f"--redirect-uri={self.redirect_uri}",
                # `--opt=value`: a generated secret may start with "-" (token_urlsafe), which argparse would
                # otherwise read as an option (one bench run in 64 failed so)
                f"--client-id={self.client_id}", f"--client-secret={self.client_secret}",
                *(f"--account={spec.cli_arg()}" for spec in self.accounts), *self.extra_args]
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"}
        self.process = ManagedProcess("sandbox", argv, self.run_dir / "logs/sandbox.log", env=env,
                                      cwd=REPO_ROOT).start()
        return self

    def _sandbox_accounts(self) -> list[SandboxAccount] | None:
        """The accounts as SandboxAccounts for the in-process server (account k with its own id range)."""
        if not self.accounts:
            return None
        from local.sandbox.accounts import SandboxAccount
        from local.sandbox.dataset import build_account_dataset

        return [SandboxAccount(spec.name, build_account_dataset(spec.profile, spec.seed, index, spec.scale),
                               rate_per_s=spec.rate_per_s, daily_limit=spec.daily_limit)
                for index, spec in enumerate(self.accounts)]

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
    def admin(self, path: str, body: dict[str, Any] | None = None, method: str | None = None,
              account: str | None = None) -> Any:
        """An admin call; with `account`, the one of that account (/__admin/accounts/<account>/<path>)."""
        data = None if body is None else json.dumps(body).encode()
        if account is not None:
            path = f"accounts/{urllib.parse.quote(account, safe='')}/{path.lstrip('/')}"
        request = urllib.request.Request(self.url + "/__admin/" + path.lstrip("/"), data=data,
                                         method=method or ("POST" if body is not None else "GET"),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            raw = response.read()
        return json.loads(raw) if raw.strip() else None

    def account_names(self) -> list[str]:
        """The sandbox's accounts in order; the first is the default ("default" when there is one)."""
        return cast(list[str], self.admin("accounts")["accounts"])

    def truth(self, account: str | None = None) -> dict[str, Any]:
        return cast(dict[str, Any], self.admin("truth", account=account))

    def stats(self, account: str | None = None) -> dict[str, Any]:
        """One account's stats; None: the IP's totals over every account, with "accounts": {name: stats}."""
        return cast(dict[str, Any], self.admin("stats", account=account))

    def reset_stats(self, account: str | None = None) -> None:
        self.admin("reset_stats", {}, account=account)

    def faults(self, spec: dict[str, Any], account: str | None = None) -> Any:
        return self.admin("faults", spec, account=account)

    def configure(self, knobs: dict[str, Any], account: str | None = None) -> dict[str, Any]:
        """Config knobs; per account: rate_per_s, daily_limit, latency_s, authorize_error, product_recent_days."""
        return cast(dict[str, Any], self.admin("config", knobs, account=account))

    def revoke(self, account: str | None = None) -> None:
        """The company's user removes the app: every token and code of that account dies (others live on)."""
        self.admin("revoke_user", {}, account=account)

    def exhaust_daily_limit(self, account: str | None = None) -> dict[str, Any]:
        """The account's daily quota is used up: its calls get the daily 429 until reset_daily_limit()."""
        return cast(dict[str, Any], self.admin("exhaust_daily_limit", {}, account=account))

    def reset_daily_limit(self, account: str | None = None) -> dict[str, Any]:
        return cast(dict[str, Any], self.admin("reset_daily_limit", {}, account=account))

    def issue_tokens(self, account: str | None = None) -> dict[str, Any]:
        """A token pair of that account without the consent dance (tests that bypass the auth function)."""
        return cast(dict[str, Any], self.admin("issue_tokens", {}, account=account))
