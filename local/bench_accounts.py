"""`make bench` part `accounts` (issue 14): N Bling accounts backfilled at once, each at its own limit.

For each N in --accounts (default 1, 2, 4), a LocalStack of its own whose sandbox serves N companies
(local.stack.sandbox.AccountSpec: the `history-small` profile, seed 146 + k, each company its own id range and its
own limiter at 3 req/s × speedup); every account is connected through the auth function, then one range message
{"start": …, "end": …, "account": …} per account (listed in calendar-year windows, issue 13) is published at once.
Bling's limits are scaled in time as in the other bench parts (local.bench_pipeline: the sandbox allows
3 × speedup per account, the functions get BLING_RATE_BUDGET_PER_S = 2.8 × speedup, latency ÷ speedup), by
--accounts-speedup (2: N × 3 × speedup requests/s must fit the machine, and 3 × speedup must be whole, the sandbox
allowing ⌊rate⌋ a second). Messages are delivered through local.stack.push_relay with as many at once per function
as production has instances (the emulator's own push serves two per subscription; docs/BENCHMARKS.md).

Measured per N:
  wall        first publish → every account's schema complete (local.verify.is_complete on bling_<slug>)
  throughput  accepted API requests of all accounts until then ÷ wall ÷ (N × limit)        target ≥ 0.9
  wall ratio  wall(N) ÷ wall(1)                                                             target ≤ 1.1
  ledger ops  Firestore calls the rate ledgers made per Bling request: the functions log them on every
              request (`ledger_ops` of the client's "bling request" line: claims, rejected claims, "highest tick"
              queries, the first clock read; with the fleet cap on, the fleet ledger's too), summed ÷ requests
The report math (summarize, rows) is pure and unit-tested (tests/unit/test_bench_accounts.py).
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

from local.bench_report import Row, fmt_pct, fmt_s
from local.stack.push_relay import PRODUCTION_MAX_INSTANCES

DEFAULT_COUNTS = (1, 2, 4)
DEFAULT_MONTHS = ("2021-01", "2026-02")
THROUGHPUT_TARGET = 0.9
WALL_RATIO_TARGET = 1.1
_SEED = 146  # history-small's own seed (local.sandbox.dataset.SMALL_HISTORY_SEED); account k gets seed + k


def account_names(n: int) -> list[str]:
    """The pipeline account slugs of a run with n accounts (also the sandbox companies' names)."""
    return [f"conta-{k + 1}" for k in range(n)]


# ------------------------------------------------------------------------------------------------ report math


def summarize(runs: dict[int, dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Per N: the ratios against the targets, from each run's wall_s, accepted_until_complete, limit_per_s,
    ledger_ops and ledger_requests (the requests whose log line carried ledger_ops)."""
    base = runs.get(1, {}).get("wall_s")
    base_ops = _ops_per_call(runs.get(1, {}))
    out = {}
    for n, r in sorted(runs.items()):
        wall = r["wall_s"]
        per_s = r["accepted_until_complete"] / wall if wall > 0 else 0.0
        ops = _ops_per_call(r)
        out[n] = {"wall_s": wall, "requests_per_s": per_s,
                  "throughput_ratio": per_s / (n * r["limit_per_s"]) if r["limit_per_s"] else None,
                  "wall_ratio": wall / base if base else None,
                  "ledger_ops_per_call": ops,
                  "ledger_ops_growth": ops / base_ops if ops is not None and base_ops else None}
    return out


def _ops_per_call(r: dict[str, Any]) -> float | None:
    calls = r.get("ledger_requests") or 0
    return r["ledger_ops"] / calls if calls else None


def rows(runs: dict[int, dict[str, Any]]) -> list[Row]:
    """The bench table's rows of the multi-account part: one block per N, targets as in issue 14."""
    summary = summarize(runs)
    out: list[Row] = []
    for n, s in summary.items():
        r = runs[n]
        label = f"accounts: {n} at once"
        ratio, wall_ratio, ops = s["throughput_ratio"], s["wall_ratio"], s["ledger_ops_per_call"]
        out += [
            Row(f"{label}: wall, first publish → every account complete",
                f"{fmt_s(s['wall_s'])} ({r['accepted_until_complete']} requests, "
                f"{r.get('nfe_total', '?')} NF-e, ×{r['speedup']:g})", "", None, s["wall_s"]),
            Row(f"{label}: throughput ÷ (N × limit)", f"{s['requests_per_s']:.1f}/s ÷ ({n} × {r['limit_per_s']:g}/s) "
                f"= {fmt_pct(ratio)}", f"≥ {THROUGHPUT_TARGET * 100:g} %",
                None if ratio is None else ratio >= THROUGHPUT_TARGET, ratio),
            Row(f"{label}: wall ÷ wall of 1 account", "n/a" if wall_ratio is None else f"{wall_ratio:.2f}×",
                f"≤ {WALL_RATIO_TARGET:g}×", None if wall_ratio is None or n == 1 else wall_ratio <= WALL_RATIO_TARGET,
                wall_ratio),
            Row(f"{label}: Firestore calls of the rate ledgers per Bling request",
                "n/a" if ops is None else f"{ops:.2f} ({r['ledger_ops']} ÷ {r['ledger_requests']})"
                + ("" if s["ledger_ops_growth"] is None or n == 1 else f", {s['ledger_ops_growth']:.2f}× N=1"),
                "", None, ops),
            Row(f"{label}: 429 responses / nothing lost", f"{r.get('responses_429', 0)} / "
                + ("yes" if r.get("nothing_lost") else f"NO ({r.get('problems', '')})"), "0 / yes",
                r.get("responses_429", 0) == 0 and bool(r.get("nothing_lost")), r.get("per_account")),
        ]
    return out


def ledger_cost(log_lines: Iterable[dict[str, Any]], since_wall: float) -> tuple[int, int]:
    """(Firestore calls of the ledgers, Bling requests) from the functions' "bling request" lines since then."""
    ops = calls = 0
    for entry in log_lines:
        if entry.get("event") != "bling_request" or "ledger_ops" not in entry:
            continue
        stamp = entry.get("time")
        with contextlib.suppress(TypeError, ValueError):
            if stamp and datetime.datetime.fromisoformat(stamp).timestamp() < since_wall:
                continue
        ops += int(entry["ledger_ops"])
        calls += 1
    return ops, calls


# ------------------------------------------------------------------------------------------------ one run


@dataclasses.dataclass
class AccountsBench:
    """One run: n accounts on a stack of their own, backfilled at once, measured, stopped."""

    n: int
    speedup: float = 2.0
    months: tuple[str, str] = DEFAULT_MONTHS
    real_latency_s: float = 0.15
    timeout_s: float = 900.0
    progress: Callable[[str], None] = lambda _m: None
    run: str | None = None
    threads: int | None = None
    profile: str = "history-small"
    push_concurrency: dict[str, int] | None = None

    def measure(self) -> dict[str, Any]:
        from local import stack as stack_mod
        from local.bench_pipeline import REAL_BUDGET_PER_S, REAL_RATE_PER_S, all_months, range_message
        from local.stack.sandbox import AccountSpec

        names = account_names(self.n)
        limit = REAL_RATE_PER_S * self.speedup
        env = {"BLING_RATE_BUDGET_PER_S": f"{REAL_BUDGET_PER_S * self.speedup:g}"}
        if self.threads:
            env["THREADS"] = str(self.threads)
        specs = [AccountSpec(name, self.profile, _SEED + k, rate_per_s=limit)
                 for k, name in enumerate(names)]
        stack = stack_mod.LocalStack(self.run, rate_per_s=limit, latency_s=self.real_latency_s / self.speedup,
                                     function_env=env, sandbox_accounts=specs,
                                     push_concurrency=self.push_concurrency or PRODUCTION_MAX_INSTANCES,
                                     message_ordering=True)  # production's delivery, ordering keys included
        months = all_months(*self.months)
        try:
            stack.start()
            if self.speedup > 1:
                # The sandbox scales the accounts' limits in time, not Bling's per-IP rules (600 requests in 10 s):
                # at ×10, 4 accounts make 120 requests/s, 12/s in real time, far under the IP's 60/s, yet 10 s of
                # it trip the unscaled rule. Scaled, the rule would not bind here: it is off (with one IP, what
                # keeps a real fleet under it is the fleet cap, ADR 012).
                stack.sandbox.configure({"ip_block_rules": False})
            for name in names:
                stack.authorize(account=name)
            truths = {name: _truth(stack.sandbox.url, name) for name in names}
            stack.sandbox.reset_stats()
            self.progress(f"accounts ×{self.n}: publishing {months[0]}..{months[-1]} for each of {', '.join(names)}")
            t0_wall, t0 = time.time(), time.monotonic()
            _publish(stack, [{**range_message(months), "account": name} for name in names])
            done = self._wait_complete(stack, truths, months, t0)
            wall = max(done.values()) - t0
            t_complete_wall = t0_wall + wall
            self.progress(f"accounts ×{self.n}: every account complete after {wall:.1f} s; settling")
            for name in names:
                _wait_settled(stack, name, truths[name], months, self.timeout_s)
            return self._result(stack, names, truths, months, t0_wall, t_complete_wall, wall, done, t0, limit)
        finally:
            stack.stop()

    def _wait_complete(self, stack: Any, truths: dict[str, Any], months: list[str], t0: float) -> dict[str, float]:
        import pg8000.dbapi

        from local import verify

        done: dict[str, float] = {}
        deadline = t0 + self.timeout_s
        while len(done) < len(truths):
            for name, truth in truths.items():
                if name in done:
                    continue
                with _schema_conn(stack, name) as conn:
                    try:
                        complete = verify.is_complete(conn, truth, months)
                    except pg8000.dbapi.DatabaseError:  # the schema is made by the account's first transaction
                        complete = False
                    if complete:
                        done[name] = time.monotonic()
            if time.monotonic() > deadline:
                raise TimeoutError(f"accounts ×{self.n}: {sorted(set(truths) - set(done))} not complete after "
                                   f"{self.timeout_s:.0f} s; logs in {stack.run_dir}")
            time.sleep(0.5)
        return done

    def _result(self, stack: Any, names: list[str], truths: dict[str, Any], months: list[str], t0_wall: float,
                t_complete_wall: float, wall: float, done: dict[str, float], t0: float,
                limit: float) -> dict[str, Any]:
        from local import verify

        records = _requests(stack.sandbox.url)
        accepted = [r for r in records if r.get("counted") and t0_wall - 0.5 <= r.get("t_wall", 0) <= t_complete_wall]
        per_account: dict[str, Any] = {}
        problems = []
        nfe_total = 0
        for name in names:
            stats = stack.sandbox.stats(account=name)
            with _schema_conn(stack, name) as conn:
                report = verify.verify(conn, truths[name], months)
                duplicates = verify.duplicate_report(conn)
                nfe = verify.db_counts(conn)["nfe"]
            nfe_total += nfe
            if not report.ok or duplicates:
                problems.append(f"{name}: verify {'ok' if report.ok else 'MISMATCH'}, {len(duplicates)} dup")
            per_account[name] = {"wall_s": done[name] - t0, "nfe": nfe, "verify_ok": report.ok,
                                 "requests_total": stats.get("requests_total"),
                                 "responses_429": stats.get("responses_429", 0),
                                 "accepted_until_complete": sum(1 for r in accepted if r.get("account") == name)}
        dead = {t: len(m) for t, m in stack.dead_letters(timeout_s=1).items() if m}
        if dead:
            problems.append(f"dead letters {dead}")
        ops, calls = ledger_cost(stack.log_lines(), t0_wall)
        return {"n": self.n, "speedup": self.speedup, "wall_s": wall, "limit_per_s": limit,
                "accepted_until_complete": len(accepted),
                "responses_429": sum(a["responses_429"] for a in per_account.values()), "nfe_total": nfe_total,
                "ledger_ops": ops, "ledger_requests": calls, "per_account": per_account,
                "nothing_lost": not problems, "problems": "; ".join(problems)[:200]}


def _truth(sandbox_url: str, account: str) -> dict[str, Any]:
    from local import verify

    url = f"{sandbox_url}/__admin/accounts/{urllib.parse.quote(account, safe='')}/truth"
    with urllib.request.urlopen(url, timeout=60) as response:
        return verify.normalize_truth(json.loads(response.read(), parse_float=Decimal))


def _requests(sandbox_url: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(sandbox_url + "/__admin/requests", timeout=120) as response:
        log = json.loads(response.read())
    return list(log.get("requests", log) if isinstance(log, dict) else log)


def _publish(stack: Any, payloads: list[dict[str, Any]]) -> None:
    publisher = stack.pubsub.publisher()
    topic = publisher.topic_path(stack.project, "bling-schedule")
    futures = [publisher.publish(topic, json.dumps(p, separators=(",", ":")).encode(), account=p["account"])
               for p in payloads]
    for future in futures:
        future.result(timeout=60)


@contextlib.contextmanager
def _schema_conn(stack: Any, account: str) -> Any:
    """A connection whose unqualified table names are the account's schema (as the store layer's are)."""
    from shared.accounts import schema_for

    conn = stack.postgres.connect(schema_for(account))
    try:
        yield conn
    finally:
        conn.close()


def _wait_settled(stack: Any, account: str, truth: dict[str, Any], months: list[str], timeout_s: float) -> None:
    """The functions quiet and the account's rows unchanged between two checks (nothing still arriving)."""
    from local import verify

    deadline = time.monotonic() + timeout_s
    previous = None
    while time.monotonic() < deadline:
        stack.wait_for_quiet(quiet_s=3, timeout_s=timeout_s)
        with _schema_conn(stack, account) as conn:
            counts = verify.db_counts(conn)
        if counts == previous:
            return
        previous = counts
    raise TimeoutError(f"{account}: still changing after {timeout_s:.0f} s")


def run_all(counts: Iterable[int], progress: Callable[[str], None], run_prefix: str,
            **options: Any) -> tuple[list[Row], dict[str, Any]]:
    """Every N of `counts`, one stack each; the table rows and the details (per N) for the JSON."""
    runs: dict[int, dict[str, Any]] = {}
    errors: dict[int, str] = {}
    for n in counts:
        try:
            runs[n] = AccountsBench(n, progress=progress, run=f"{run_prefix}-accounts{n}", **options).measure()
        except Exception as exc:  # noqa: BLE001 - the other N still run; the error is a row
            errors[n] = f"{type(exc).__name__}: {exc}"
            progress(f"accounts ×{n}: FAILED: {errors[n]}")
    table = rows(runs) + [Row(f"accounts: {n} at once: error", e.splitlines()[0][:100], "", False)
                          for n, e in errors.items()]
    return table, {"runs": runs, "summary": summarize(runs), "errors": errors}


def bench_part(bench: Any) -> None:
    """The `accounts` part of local.bench.Bench: its rows, details and duration added to the bench's."""
    started = time.monotonic()
    args = bench.args
    counts = [int(x) for x in args.accounts.split(",") if x.strip()]
    table, bench.details["accounts"] = run_all(counts, bench.say, bench.run_dir.name, speedup=args.accounts_speedup,
                                               real_latency_s=args.latency_ms / 1000.0, timeout_s=args.timeout,
                                               threads=args.threads, months=args.month_range)
    bench.rows += table
    bench.durations["accounts"] = time.monotonic() - started
