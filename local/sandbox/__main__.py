"""Run the Bling sandbox from the command line until SIGTERM/SIGINT.

    python -m local.sandbox --profile demo --seed 42 --rate 3 --latency-ms 0 --port 0 --port-file /tmp/port

The chosen port is written to --port-file (atomically, once the socket listens), so a script can start the
server with port 0 and wait for the file.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

from local.sandbox.dataset import PROFILES, build_profile
from local.sandbox.server import SandboxServer


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
    p.add_argument("--verbose", action="store_true", help="log every request to stderr")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    dataset = build_profile(args.profile, args.seed, args.scale)
    redirect_uri = args.redirect_uri or "http://127.0.0.1/callback"
    server = SandboxServer(dataset, client_id=args.client_id, client_secret=args.client_secret,
                           redirect_uri=redirect_uri, rate_per_s=args.rate, daily_limit=args.daily_limit,
                           latency_s=args.latency_ms / 1000.0, code_ttl_s=args.code_ttl,
                           access_ttl_s=args.access_ttl, host=args.host, port=args.port, verbose=args.verbose)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server.start()
    if args.port_file:
        tmp = f"{args.port_file}.tmp{os.getpid()}"
        with open(tmp, "w", encoding="ascii") as fh:
            fh.write(f"{server.port}\n")
        os.replace(tmp, args.port_file)
    print(f"Bling sandbox ({args.profile}, seed {args.seed}, {len(dataset.nfe)} NF-e) listening on "
          f"{server.api_base}", flush=True)
    while not stop.wait(0.5):
        pass
    server.stop()
    print("Bling sandbox stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
