"""The Bling accounts (companies) one sandbox serves: one OAuth app, authorized by each company on its own.

Per account: its data set, its 3/s + daily limiter, its faults, its latency and product window, and the request
records the per-account stats are computed from. Shared by all (they belong to the IP or to the app): the IP
guard, the token endpoint's meter, the client id/secret and the token lifetimes.

With one account (the default, named DEFAULT_ACCOUNT) the sandbox is exactly the single-company sandbox it was;
with several, the first is the default: the unscoped admin endpoints mean it, and an authorize call that names no
company is approved by it. Names follow the pipeline's account slugs, so a test can use one name for both.
"""
from __future__ import annotations

import dataclasses
import datetime
import re

from local.sandbox.dataset import Dataset
from local.sandbox.faults import FaultInjector
from local.sandbox.ratelimit import AccountLimiter

DEFAULT_ACCOUNT = "default"
# The /oauth/authorize parameter naming the company whose user approves: on Bling it is whoever is logged in; here
# this parameter, which Bling would ignore (absent: the default account).
APPROVER_PARAM = "sandbox_account"
# The pipeline's account slug (shared/accounts.py): 3-40 of [a-z0-9-], a letter first, no "--", no trailing "-".
_NAME = re.compile(r"^[a-z](?:[a-z0-9]|-(?=[a-z0-9])){1,38}[a-z0-9]$")


def check_account_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"sandbox account name {name!r}: use 3-40 lowercase letters, digits and single hyphens, "
                         "starting with a letter (the pipeline's account slug)")
    return name


@dataclasses.dataclass
class SandboxAccount:
    """One company for SandboxServer(accounts=[...]); None means the server's value (its constructor argument)."""

    name: str
    dataset: Dataset
    rate_per_s: float | None = None
    daily_limit: int | None = None
    latency_s: float | None = None
    product_recent_days: int | None = None


class Account:
    """One company's runtime state in the server (no lock of its own: the server calls it under its lock)."""

    # The knobs of /__admin/accounts/<name>/config (the unscoped /__admin/config sets them on the default account).
    KNOBS = ("rate_per_s", "daily_limit", "latency_s", "authorize_error", "product_recent_days")

    def __init__(self, name: str, dataset: Dataset, *, rate_per_s: float, daily_limit: int, latency_s: float,
                 product_recent_days: int) -> None:
        self.name = check_account_name(name)
        self.dataset = dataset
        self.limiter = AccountLimiter(rate_per_s, daily_limit)
        self.faults = FaultInjector()
        self.latency_s = float(latency_s)
        self.product_recent_days = int(product_recent_days)
        self.authorize_error: str | None = None  # the company's user refuses consent (e.g. "access_denied")
        self.today = datetime.datetime.strptime(dataset.today, "%Y-%m-%d")

    def configure(self, key: str, value: object) -> None:
        if key == "rate_per_s":
            self.limiter.rate_per_s = float(value)  # type: ignore[arg-type]
        elif key == "daily_limit":
            self.limiter.daily_limit = int(value)  # type: ignore[call-overload]
        elif key == "latency_s":
            self.latency_s = float(value)  # type: ignore[arg-type]
        elif key == "authorize_error":
            self.authorize_error = str(value) if value else None
        elif key == "product_recent_days":
            self.product_recent_days = int(value)  # type: ignore[call-overload]
        else:
            raise KeyError(key)

    def config(self) -> dict[str, object]:
        return {"rate_per_s": self.limiter.rate_per_s, "daily_limit": self.limiter.daily_limit,
                "latency_s": self.latency_s, "authorize_error": self.authorize_error,
                "product_recent_days": self.product_recent_days}


def build_accounts(specs: list[SandboxAccount], *, rate_per_s: float, daily_limit: int, latency_s: float,
                   product_recent_days: int) -> dict[str, Account]:
    """The accounts in order (the first is the default), each spec's None filled from the server's values.

    Refuses a name used twice and two data sets that share an NF-e, contact or product id: on Bling ids are global,
    and a test that proves "no row of A in B" by id needs them apart (dataset.build_account_dataset does that)."""
    if not specs:
        raise ValueError("a sandbox needs at least one account")
    accounts: dict[str, Account] = {}
    seen: dict[str, dict[int, str]] = {"nfe": {}, "contacts": {}, "products": {}}
    for spec in specs:
        if spec.name in accounts:
            raise ValueError(f"sandbox account {spec.name!r} given twice")
        for kind, owners in seen.items():
            for record_id in getattr(spec.dataset, kind):
                other = owners.setdefault(record_id, spec.name)
                if other != spec.name:
                    raise ValueError(f"sandbox accounts {other!r} and {spec.name!r} share {kind} id {record_id}: "
                                     "build them with dataset.build_account_dataset(profile, seed, index)")
        accounts[spec.name] = Account(
            spec.name, spec.dataset,
            rate_per_s=rate_per_s if spec.rate_per_s is None else spec.rate_per_s,
            daily_limit=daily_limit if spec.daily_limit is None else spec.daily_limit,
            latency_s=latency_s if spec.latency_s is None else spec.latency_s,
            product_recent_days=product_recent_days if spec.product_recent_days is None
            else spec.product_recent_days)
    return accounts
