"""Run the Bling sandbox from the command line until SIGTERM/SIGINT.

    python -m local.sandbox --profile demo --seed 42 --rate 3 --latency-ms 0 --port 0 --port-file /tmp/port

The chosen port is written to --port-file (atomically, once the socket listens), so a script can start the
server with port 0 and wait for the file.

Several companies: repeat `--account NAME[,profile=P][,seed=N][,scale=X][,rate=R][,daily_limit=N]`; what an
account leaves out comes from --profile, --seed, --scale, --rate and --daily-limit. The first is the default
account. Without --account there is one account, "default", exactly as before.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

from local.sandbox.accounts import SandboxAccount
from local.sandbox.dataset import PROFILES, build_account_dataset, build_profile
from local.sandbox.server import SandboxServer

# --account keys → (SandboxAccount field or dataset argument, type)
_ACCOUNT_KEYS: dict[str, type] = {"profile": str, "seed": int, "scale": float, "rate": float, "daily_limit": int}


def parse_account(text: str) -> dict[str, object]:
    """`loja-a,profile=demo,seed=7` → {"name": "loja-a", "profile": "demo", "seed": 7}."""
    name, *pairs = text.split(",")
    spec: dict[str, object] = {"name": name.strip()}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or key not in _ACCOUNT_KEYS:
            raise argparse.ArgumentTypeError(f"--account {text!r}: {pair!r} is not one of "
                                             f"{', '.join(k + '=...' for k in _ACCOUNT_KEYS)}")
        try:
            spec[key] = _ACCOUNT_KEYS[key](value.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"--account {text!r}: bad {key} {value!r}") from None
    if spec.get("profile", PROFILES[0]) not in PROFILES:
        raise argparse.ArgumentTypeError(f"--account {text!r}: profile must be one of {', '.join(PROFILES)}")
    return spec


def build_accounts(args: argparse.Namespace) -> list[SandboxAccount]:
    """The --account specs as SandboxAccounts, account k with its own id range (ids are global on Bling)."""
    accounts = []
    for index, spec in enumerate(args.account):
        dataset = build_account_dataset(str(spec.get("profile", args.profile)), int(spec.get("seed", args.seed)),
                                        index, float(spec.get("scale", args.scale)))
        accounts.append(SandboxAccount(str(spec["name"]), dataset, rate_per_s=float(spec.get("rate", args.rate)),
                                       daily_limit=int(spec.get("daily_limit", args.daily_limit))))
    return accounts


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m local.sandbox", description="Local Bling API v3 sandbox")
    p.add_argument("--profile", choices=PROFILES, default="demo")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--scale", type=float, default=1.0, help="multiplier for the history profile")
    p.add_argument("--rate", type=float, default=3.0, help="account requests per second")
    p.add_argument("--daily-limit", type=int, default=120000)
    p.add_argument("--latency-ms", type=float, default=0.0, help="sleep added to every API request")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--port-file", help="write the listening port here")
    p.add_argument("--client-id", default="sandbox-client")
    p.add_argument("--client-secret", default="sandbox-secret")
    p.add_argument("--redirect-uri", default="", help="the app's registered redirect URI "
                   "(default http://127.0.0.1/callback)")
    p.add_argument("--code-ttl", type=float, default=60.0, help="authorization code lifetime, seconds")
    p.add_argument("--access-ttl", type=float, default=21600.0, help="access token lifetime, seconds")
    p.add_argument("--account", action="append", type=parse_account, default=[],
                   help="a company: NAME[,profile=P][,seed=N][,scale=X][,rate=R][,daily_limit=N] (repeat it; "
                   "the first is the default account)")
    p.add_argument("--verbose", action="store_true", help="log every request to stderr")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    accounts = build_accounts(args) if args.account else None
    dataset = None if accounts else build_profile(args.profile, args.seed, args.scale)
    redirect_uri = args.redirect_uri or "http://127.0.0.1/callback"
    try:
        server = SandboxServer(dataset, client_id=args.client_id, client_secret=args.client_secret,
                               redirect_uri=redirect_uri, rate_per_s=args.rate, daily_limit=args.daily_limit,
                               latency_s=args.latency_ms / 1000.0, code_ttl_s=args.code_ttl,
                               access_ttl_s=args.access_ttl, host=args.host, port=args.port, verbose=args.verbose,
                               accounts=accounts)
    except ValueError as exc:  # a bad or repeated account name
        print(f"python -m local.sandbox: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server.start()
    if args.port_file:
        tmp = f"{args.port_file}.tmp{os.getpid()}"
        with open(tmp, "w", encoding="ascii") as fh:
            fh.write(f"{server.port}\n")
        os.replace(tmp, args.port_file)
    if accounts:
        served = "; ".join(f"{a.name}: seed {a.dataset.seed}, {len(a.dataset.nfe)} NF-e" for a in accounts)
    else:
        served = f"{args.profile}, seed {args.seed}, {len(server.app.dataset.nfe)} NF-e"
    print(f"Bling sandbox ({served}) listening on {server.api_base}", flush=True)
    while not stop.wait(0.5):
        pass
    server.stop()
    print("Bling sandbox stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
