"""`make bench`: the pipeline against the Bling sandbox, measured, in one table (and the same as JSON).

    python -m local.bench [--scale 0.25] [--speedup 10] [--skip-baseline] [--only loading,coldstart] [--json PATH]

Parts (all by default, in this order; --only picks some):
  coldstart  import time of each functions/<name>/main.py in a fresh interpreter, median of --coldstart-runs
  loading    --loading-invoices invoices upserted with shared.nfe_store.upsert_nfe, one transaction each
  backfill   the sandbox `history` profile × --scale, one {"start": "2021-01-01", "end": "2026-02-28"} message to
             bling-schedule (listed in calendar-year windows), through every function (LocalStack), Bling's 3 req/s
             limit scaled by --speedup
  rerun      the same month again once loaded (--rerun-month): list calls only, no detail call expected; then,
             after a backfill, its range again: list calls per NF-e of a re-run of the loaded history
  daily      {"daily": true}: the last 7 days up to today in São Paulo (nothing changed: 2 list calls expected)
  faults     the backfill again on a fresh stack with --fault-share of the calls failing (half 500/502/503, half
             hangs of --hang-s seconds) and every access token expiring every --token-expiry-s: wall ÷ clean wall
  small      the `history-small` profile (150 NF-e over the same 62 months, seed --small-seed) at --speedup
  small-real the same at Bling's real speed (3 req/s, 150 ms latency; ≈ 3 min)
  baseline   the same history through local/baseline_collector.py (sequential, 0.35 s ÷ speedup between calls)
  accounts   --accounts N accounts (default 1,2,4) backfilled at once, each at its own limit, time scaled by
             --accounts-speedup (local/bench_accounts.py)

Every backfill is measured against the fewest calls that could deliver its data (local.bench_report.fewest_calls,
from the sandbox's truth): calls made ÷ fewest, and wall time ÷ (fewest ÷ the account's limit); the targets of
issue 13 are printed as met or not (a target not met is reported, never a failure).
Durations of the pipeline parts are speedup times shorter than against the real Bling; the table shows both.
Everything started here is stopped on exit (also on Ctrl-C and SIGTERM).
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from local.bench_report import Row, fmt_pct, fmt_s, format_table, write_json
from local.sandbox.dataset import SMALL_HISTORY_SEED

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_JSON = REPO_ROOT / ".stack/bench/last.json"
PARTS = ("coldstart", "loading", "backfill", "rerun", "daily", "faults", "small", "small-real", "baseline",
         "accounts")
KIND_SHORT = {"nfe_list": "list", "nfe_detail": "detail", "contato": "contato", "produtos_list": "produtos?",
              "produto": "produto/id", "forma_pagamento": "forma", "other": "other"}


def kinds_text(by_kind: dict[str, int]) -> str:
    parts = [f"{KIND_SHORT.get(k, k)} {v}" for k, v in by_kind.items() if v]
    return ", ".join(parts) or "none"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m local.bench", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--scale", type=float, default=0.25, help="history profile multiplier (1.0 = 2,926 NF-e)")
    p.add_argument("--speedup", type=float, default=10.0, help="Bling's limits and latency scaled in time by this")
    p.add_argument("--latency-ms", type=float, default=150.0, help="real Bling latency per call, before ÷ speedup")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--only", default="", help=f"comma-separated parts: {','.join(PARTS)}")
    p.add_argument("--skip-baseline", action="store_true")
    p.add_argument("--months", default="2021-01..2026-02", help="backfill and baseline range FIRST..LAST "
                   "(every month in it is sent, with or without invoices)")
    p.add_argument("--rerun-month", default="2025-12")
    p.add_argument("--loading-invoices", type=int, default=10_000)
    p.add_argument("--coldstart-runs", type=int, default=5)
    p.add_argument("--baseline-pacing", choices=("sleep", "interval"), default="sleep",
                   help="sleep: 0.35 s after each answer; interval: 0.35 s between request starts")
    p.add_argument("--threads", type=int, default=None, help="THREADS for every function (functions-framework)")
    p.add_argument("--timeout", type=float, default=1800.0, help="give up on a pipeline part after this, s")
    p.add_argument("--small-seed", type=int, default=SMALL_HISTORY_SEED, help="seed of the history-small profile")
    p.add_argument("--fault-share", type=float, default=0.02, help="share of API calls that fail in the fault run "
                   "(half 500/502/503, half hangs)")
    p.add_argument("--hang-s", type=float, default=35.0, help="a hang lasts this long, wall seconds, not scaled "
                   "(the functions cut it at their request deadline, --http-deadline-s)")
    p.add_argument("--http-deadline-s", type=float, default=None, help="BLING_HTTP_TIMEOUT_S for the functions, "
                   "the total deadline of one request (default 5 s ÷ speedup, at least 1 s)")
    p.add_argument("--token-expiry-s", type=float, default=20.0, help="fault run: every access token expires "
                   "this often, wall seconds")
    p.add_argument("--quiet-s", type=float, default=None, help="seconds without a function log line that mean "
                   "a pipeline part has settled (default 5 after a backfill, 4 after a re-run or daily run)")
    p.add_argument("--accounts", default="1,2,4", help="part accounts: the numbers of accounts backfilled at once "
                   "(local/bench_accounts.py)")
    p.add_argument("--accounts-speedup", type=float, default=2.0, help="part accounts: Bling's limits scaled by "
                   "this instead of --speedup (N × 3 req/s × it must fit the machine: see local/bench_accounts.py)")
    p.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"default {DEFAULT_JSON.relative_to(REPO_ROOT)}")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = p.parse_args(argv)
    parts = [x.strip() for x in args.only.split(",") if x.strip()] or list(PARTS)
    unknown = set(parts) - set(PARTS)
    if unknown:
        p.error(f"unknown part(s) {sorted(unknown)}; choose from {', '.join(PARTS)}")
    if args.skip_baseline and "baseline" in parts:
        parts.remove("baseline")
    args.parts = [x for x in PARTS if x in parts]
    first, _, last = args.months.partition("..")
    if not (len(first) == 7 and len(last or first) == 7 and first <= (last or first)):
        p.error("--months is YYYY-MM..YYYY-MM")
    args.month_range = (first, last or first)
    if args.scale <= 0 or args.speedup <= 0 or args.accounts_speedup <= 0:
        p.error("--scale, --speedup and --accounts-speedup must be positive")
    return args


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.rows: list[Row] = []
        self.details: dict[str, Any] = {}
        self.started = time.monotonic()
        self.durations: dict[str, float] = {}
        from local import stack as stack_mod

        self.stack_mod = stack_mod
        self.run_dir = stack_mod.new_run_dir(f"bench-{datetime.datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}")

    def say(self, message: str) -> None:
        if not self.args.quiet:
            print(f"[bench {time.monotonic() - self.started:6.1f}s] {message}", file=sys.stderr, flush=True)

    def failed(self, part: str, exc: BaseException) -> None:
        self.say(f"{part}: FAILED: {type(exc).__name__}: {exc}")
        self.details[part] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        self.rows.append(Row(f"{part}: error", f"{type(exc).__name__}: {str(exc).splitlines()[0][:90]}", "", False))

    # ------------------------------------------------------------------------------------------------ parts
    def coldstart(self) -> None:
        from local.bench_offline import measure_coldstart

        result = measure_coldstart(self.args.coldstart_runs, progress=self.say)
        self.details["coldstart"] = result
        for name, entry in result["functions"].items():
            label = f"cold start: import {name}/main.py (median of {result['runs']})"
            if "import_median_s" in entry:
                heavy = entry["heaviest"][0][0] if entry.get("heaviest") else ""
                value = f"{entry['import_median_s']:.2f} s" + (f" ({heavy} {entry['heaviest'][0][1]:.2f} s)"
                                                                  if heavy else "")
                self.rows.append(Row(label, value, "< 1.0 s", entry["import_median_s"] < 1.0,
                                     entry["import_median_s"]))
            else:
                self.rows.append(Row(label, "failed: " + entry["error"][:70], "< 1.0 s", False))

    def loading(self) -> None:
        from local.bench_offline import measure_loading

        n = self.args.loading_invoices
        result = measure_loading(n, self.run_dir, self.args.seed, progress=self.say)
        self.details["loading"] = result
        factor = result["invoices_per_s"] / 3.0
        self.rows.append(Row(f"loading: {n:,} invoices, 1 transaction each",
                             f"{result['invoices_per_s']:.0f} inv/s, {result['rows_per_s']:.0f} rows/s "
                             f"({fmt_s(result['seconds'])})", "", None, result["invoices_per_s"]))
        self.rows.append(Row("loading ÷ API (Bling gives at most 3 invoices/s)", f"{factor:.0f}×", "≥ 50×",
                             factor >= 50, factor))

    def _pipeline_bench(self, tag: str, **overrides: Any) -> Any:
        from local.bench_pipeline import PipelineBench

        kwargs = {"scale": self.args.scale, "speedup": self.args.speedup, "seed": self.args.seed,
                  "real_latency_s": self.args.latency_ms / 1000.0, "timeout_s": self.args.timeout,
                  "progress": self.say, "run": f"{self.run_dir.name}-{tag}", "threads": self.args.threads,
                  "http_deadline_s": self.args.http_deadline_s, "quiet_s": self.args.quiet_s}
        return PipelineBench(**{**kwargs, **overrides})

    def pipeline(self, parts: list[str]) -> None:
        from local.bench_pipeline import all_months

        months = all_months(*self.args.month_range)
        bench = self._pipeline_bench("stack")
        try:
            t = time.monotonic()
            bench.start()
            self.durations["stack start"] = time.monotonic() - t
            if "backfill" in parts:
                t = time.monotonic()
                try:
                    self.backfill_rows(bench.backfill(months), bench)
                except Exception as exc:  # noqa: BLE001 - the other parts still run
                    self.failed("backfill", exc)
                self.durations["backfill"] = time.monotonic() - t
            if "rerun" in parts:
                t = time.monotonic()
                try:
                    result = bench.rerun(self.args.rerun_month)
                    self.details["rerun"] = result
                    details = result["requests_by_kind"].get("nfe_detail", 0)
                    self.rows.append(Row(f"re-run of loaded month {self.args.rerun_month}: calls",
                                         kinds_text(result["requests_by_kind"]) + f" in {fmt_s(result['wall_s'])}",
                                         "0 detail calls", details == 0 and result["db_unchanged"], details))
                    if set(months) <= bench.loaded_months:
                        self.rerun_history_rows(bench.rerun_history(months))
                except Exception as exc:  # noqa: BLE001
                    self.failed("rerun", exc)
                self.durations["rerun"] = time.monotonic() - t
            if "daily" in parts:
                t = time.monotonic()
                try:
                    result = bench.daily()
                    self.details["daily"] = result
                    by_kind = result["requests_by_kind"]
                    lists = by_kind.get("nfe_list", 0)
                    self.rows.append(Row(f"daily run ({', '.join(result['window'])}), nothing changed: calls",
                                         kinds_text(by_kind) + f" in {fmt_s(result['wall_s'])}",
                                         "2 list calls, nothing else",
                                         lists <= 2 and result["requests_total"] == lists, result["requests_total"]))
                except Exception as exc:  # noqa: BLE001
                    self.failed("daily", exc)
                self.durations["daily"] = time.monotonic() - t
        finally:
            t = time.monotonic()
            bench.stop()
            self.durations["stack stop"] = time.monotonic() - t
            self.details["stack"] = {"startup_s": bench.startup_s, "run_dir": str(bench.stack.run_dir)
                                     if bench.stack else None}

    def rerun_history_rows(self, r: dict[str, Any]) -> None:
        self.details["rerun_history"] = r
        n = max(1, r["nfe_in_range"])
        lists = r["requests_by_kind"].get("nfe_list", 0)
        per_nfe = lists / n
        self.rows += [
            Row(f"re-run of the loaded history ({r['months']} months, {r['nfe_in_range']} NF-e): calls",
                kinds_text(r["requests_by_kind"]) + f" in {fmt_s(r['wall_s'])}; fewest list calls "
                f"{r['fewest_list_calls']} ({r['fewest_list_calls'] / n:.3f} per NF-e)", "", None,
                r["requests_by_kind"]),
            Row("re-run of the loaded history: list calls per NF-e", f"{per_nfe:.3f}", "≤ 0.05",
                per_nfe <= 0.05 and r["requests_total"] == lists, per_nfe),
        ]

    def gap_rows(self, label: str, r: dict[str, Any], *, calls_target: float | None = None,
                 wall_target: float | None = None) -> None:
        """The issue-13 rows of one backfill: calls and wall time against the fewest calls, budget use, losses."""
        gap, fewest = r["gap"], r["fewest"]
        made = r["requests_by_kind"]
        per_kind = ", ".join(f"{KIND_SHORT.get(k, k)} {made.get(k, 0)}/{v}" for k, v in fewest["by_kind"].items())
        extra = {k: v for k, v in made.items() if k not in fewest["by_kind"] and v}
        if extra:
            per_kind += ", " + kinds_text(extra) + "/0"
        requests = r["requests_total"] or 0
        share_429 = r["responses_429"] / requests if requests else 0.0
        self.rows += [
            Row(f"{label}: calls made ÷ fewest", f"{requests} ÷ {gap['fewest_calls']} = {gap['calls_ratio']:.2f}× "
                f"(made/fewest: {per_kind})", f"≤ {calls_target:g}×" if calls_target else "",
                None if calls_target is None else gap["calls_ratio"] <= calls_target, gap),
            Row(f"{label}: wall ÷ (fewest ÷ limit)", f"{fmt_s(r['wall_s'])} ÷ {fmt_s(gap['floor_s'])} = "
                f"{gap['wall_ratio']:.2f}× (limit {r['limit_per_s']:g}/s)",
                f"≤ {wall_target:g}×" if wall_target else "",
                None if wall_target is None else gap["wall_ratio"] <= wall_target, gap["wall_ratio"]),
            Row(f"{label}: 429 responses", f"{r['responses_429']} ({fmt_pct(share_429)})", "≤ 1 % of requests",
                share_429 <= 0.01, r["responses_429"]),
        ]
        ticks = (r.get("analysis") or {}).get("ticks") or {}
        if ticks.get("offered_after_first_request"):
            offered = ticks["offered_after_first_request"]
            self.rows.append(Row(f"{label}: budget ticks after 1st request: sent / dropped late / unclaimed",
                                 f"{ticks['sent_after_first_request'] / offered * 100:.1f} % / "
                                 f"{ticks['claimed_not_sent'] / offered * 100:.1f} % / "
                                 f"{(ticks['unclaimed_share'] or 0) * 100:.1f} % of {offered:.0f} "
                                 f"(budget = {r['budget_per_s'] / r['limit_per_s'] * 100:.1f} % of limit)", "", None,
                                 ticks))

    def lost_row(self, label: str, r: dict[str, Any]) -> Row:
        return Row(f"{label}: nothing lost (verify ok, no duplicates, no dead letters)",
                   "yes" if r["nothing_lost"] else f"NO: {r['nfe_missing']} NF-e missing, verify "
                   f"{'ok' if r['verify_ok'] else 'MISMATCH'}, {len(r['duplicates'])} dup, dead letters "
                   f"{r['dead_letters'] or 0}", "yes", r["nothing_lost"])

    def separate_backfill(self, part: str, label: str, **overrides: Any) -> dict[str, Any] | None:
        """One backfill of the whole range on a stack of its own (started, measured, stopped)."""
        from local.bench_pipeline import all_months

        t = time.monotonic()
        bench = self._pipeline_bench(part, **overrides)
        try:
            bench.start()
            result = bench.backfill(all_months(*self.args.month_range))
            self.details[part] = result
            self.rows.append(Row(f"{label}", f"{result['new_invoices']} NF-e in {result['months']} months: "
                                 f"{fmt_s(result['wall_s'])} (≈ {result['wall_s'] * bench.speedup / 60:.1f} min at "
                                 f"real speed)", "", None, result["wall_s"]))
            return result
        except Exception as exc:  # noqa: BLE001 - the other parts still run
            self.failed(part, exc)
            return None
        finally:
            bench.stop()
            self.durations[part] = time.monotonic() - t

    def faults(self) -> None:
        share, hang_s, expiry_s = self.args.fault_share, self.args.hang_s, self.args.token_expiry_s
        spec = {"status_5xx_share": share / 2, "hang_share": share / 2, "hang_s": hang_s,
                "expire_token_every_s": expiry_s, "seed": 13}
        label = (f"faults: history × {self.args.scale:g}, ×{self.args.speedup:g}, {share * 100:g} % faults "
                 f"(500/502/503 and {hang_s:g} s hangs), token expiry every {expiry_s:g} s")
        r = self.separate_backfill("faults", label, faults=spec)
        if r is None:
            return
        self.gap_rows("faults", r)
        statuses = r.get("responses_by_status") or {}
        injected = sum(v for k, v in statuses.items() if str(k) in ("0", "500", "502", "503"))
        clean = (self.details.get("backfill") or {}).get("wall_s")
        ratio = r["wall_s"] / clean if clean else None
        self.rows += [
            Row("faults: injected (5xx + hangs) / 401 answers", f"{injected} / {statuses.get('401', 0)}", "", None,
                statuses),
            Row("faults: wall ÷ clean backfill wall", f"{fmt_s(r['wall_s'])} ÷ {fmt_s(clean)} = {ratio:.2f}×"
                if ratio else f"{fmt_s(r['wall_s'])} (no clean backfill in this run)", "≤ 1.15×",
                None if ratio is None else ratio <= 1.15, ratio),
            self.lost_row("faults", r),
        ]

    def small(self, part: str) -> None:
        real = part == "small-real"
        speedup = 1.0 if real else self.args.speedup
        label = f"{part}: history-small (seed {self.args.small_seed}), ×{speedup:g}"
        r = self.separate_backfill(part, label, profile="history-small", scale=1.0, seed=self.args.small_seed,
                                   speedup=speedup)
        if r is not None:
            self.gap_rows(part, r, wall_target=1.2 if real else None)
            self.rows.append(self.lost_row(part, r))

    def backfill_rows(self, r: dict[str, Any], bench: Any) -> None:
        self.details["backfill"] = r
        speedup = self.args.speedup
        requests = r["requests_total"] or 0
        self.rows += [
            Row(f"backfill: history × {self.args.scale:g}", f"{r['new_invoices']} NF-e in {r['months']} months, "
                f"{r['db_counts']['contato']} contacts, {r['db_counts']['produto']} products", "", None),
            Row("backfill: wall time, first publish → DB complete",
                f"{fmt_s(r['wall_s'])} (≈ {r['wall_s'] * speedup / 60:.1f} min at real speed)", "", None,
                r["wall_s"]),
            Row("backfill: ideal time = requests ÷ limit", f"{fmt_s(r['ideal_s'])} ({requests} req ÷ "
                f"{r['limit_per_s']:g}/s)", "", None, r["ideal_s"]),
            Row("backfill: utilisation = requests ÷ (wall × limit)", fmt_pct(r["utilisation"]), "≥ 90 %",
                (r["utilisation"] or 0) >= 0.9, r["utilisation"]),
            Row("backfill: requests by kind", kinds_text(r["requests_by_kind"]), "", None, r["requests_by_kind"]),
            Row("backfill: API calls per new invoice (list + detail)", f"{r['calls_per_invoice_list_detail']:.3f}",
                "≤ 1.05", r["calls_per_invoice_list_detail"] <= 1.05, r["calls_per_invoice_list_detail"]),
            Row("backfill: API calls per new invoice (all, incl. enrichment)", f"{r['calls_per_invoice_total']:.3f}",
                "", None, r["calls_per_invoice_total"]),
        ]
        req = (r.get("analysis") or {}).get("requests") or {}
        if req.get("utilisation_while_requests_flow") is not None:
            self.rows.append(Row("backfill: utilisation from first to last request",
                                 fmt_pct(req["utilisation_while_requests_flow"]) + f" (first request after "
                                 f"{fmt_s(req['first_request_after_s'])})", "", None,
                                 req["utilisation_while_requests_flow"]))
        analysis = r.get("analysis") or {}
        handler = (analysis.get("handler_time") or {}).get("detail")
        if handler and handler.get("requests"):
            n = handler["requests"]
            self.rows.append(Row("backfill: detail handler per call: before request / HTTP / store",
                                 f"{handler['before_request_s'] / n * 1000:.0f} / {handler['http_s'] / n * 1000:.0f} / "
                                 f"{handler['store_s'] / n * 1000:.0f} ms (tick {1000 / r['budget_per_s']:.1f} ms)",
                                 "", None, handler))
        functions = analysis.get("functions") or {}
        if functions:
            self.rows.append(Row("backfill: concurrent handlers per function, max/mean",
                                 ", ".join(f"{name} {f['max_concurrent']}/{f['mean_concurrent']:.1f}"
                                           for name, f in functions.items()), "", None, functions))
        # Issue 13's targets for the quarter-size history: calls ≤ 1.1 × fewest, wall ≤ 1.15 × (fewest ÷ limit).
        self.gap_rows("backfill", r, calls_target=1.1, wall_target=1.15)
        self.rows.append(self.lost_row("backfill", r))

    def baseline(self) -> None:
        from local.baseline_collector import issue_token, run_baseline
        from local.bench_pipeline import REAL_RATE_PER_S, all_months

        speedup = self.args.speedup
        sandbox = self.stack_mod.Sandbox(self.run_dir, profile="history", seed=self.args.seed,
                                         rate_per_s=REAL_RATE_PER_S * speedup,
                                         latency_s=self.args.latency_ms / 1000.0 / speedup,
                                         extra_args=["--scale", repr(float(self.args.scale))])
        try:
            sandbox.start()
            token = issue_token(sandbox.url)
            sandbox.reset_stats()
            pause_ms = 0.35 / speedup * 1000
            self.say(f"baseline: sequential collector, {pause_ms:g} ms pause ({self.args.baseline_pacing})")
            result = run_baseline(sandbox.api_base, token, all_months(*self.args.month_range), speedup=speedup,
                                  pacing=self.args.baseline_pacing, progress=self.say).to_json()
            stats = sandbox.stats()
        finally:
            sandbox.stop()
        result["sandbox_requests_by_kind"] = stats.get("requests_by_kind")
        result["sandbox_responses_429"] = stats.get("responses_429")
        self.details["baseline"] = result
        pacing = ("0.35 s after each answer" if self.args.baseline_pacing == "sleep"
                  else "≥ 0.35 s between request starts")
        self.rows.append(Row(f"baseline (sequential, {pacing}): wall time",
                             f"{fmt_s(result['wall_s'])} (≈ {result['wall_s'] * speedup / 60:.1f} min at real speed)",
                             "", None, result["wall_s"]))
        self.rows.append(Row("baseline: requests by kind", kinds_text(result["requests_by_kind"]) +
                             f"; 429s {result['responses_429']}", "", None, result["requests"]))
        ours = (self.details.get("backfill") or {}).get("wall_s")
        if ours:
            ratio = ours / result["wall_s"]
            self.rows.append(Row("backfill wall time ours ÷ baseline", f"{ratio:.2f}×", "", None, ratio))

    # ------------------------------------------------------------------------------------------------ run
    def run(self) -> int:
        parts = self.args.parts
        self.say(f"parts: {', '.join(parts)}; run directory {self.run_dir}")
        for part in ("coldstart", "loading"):
            if part in parts:
                t = time.monotonic()
                try:
                    getattr(self, part)()
                except Exception as exc:  # noqa: BLE001
                    self.failed(part, exc)
                self.durations[part] = time.monotonic() - t
        pipeline_parts = [p for p in parts if p in ("backfill", "rerun", "daily")]
        if pipeline_parts:
            try:
                self.pipeline(pipeline_parts)
            except Exception as exc:  # noqa: BLE001
                self.failed("stack", exc)
        # Each on a stack of its own, after the clean backfill the fault run is compared with.
        if "faults" in parts:
            self.faults()
        for part in ("small", "small-real"):
            if part in parts:
                self.small(part)
        if "baseline" in parts:
            t = time.monotonic()
            try:
                self.baseline()
            except Exception as exc:  # noqa: BLE001
                self.failed("baseline", exc)
            self.durations["baseline"] = time.monotonic() - t
        if "accounts" in parts:
            from local.bench_accounts import bench_part

            bench_part(self)
        self.durations["total"] = time.monotonic() - self.started
        meta = {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                "machine": f"{platform.platform()}, {os.cpu_count()} cores, python {platform.python_version()}",
                "loadavg_at_end": os.getloadavg(), "args": {k: (str(v) if isinstance(v, Path) else v)
                                                           for k, v in vars(self.args).items()},
                "durations_s": self.durations}
        write_json(self.args.json, meta, self.rows, self.details)
        print(format_table(self.rows))
        print(f"\n(scale {self.args.scale:g}, speedup {self.args.speedup:g}: sandbox "
              f"{3 * self.args.speedup:g} req/s, budget {2.8 * self.args.speedup:g} req/s, latency "
              f"{self.args.latency_ms / self.args.speedup:g} ms; parts took "
              + ", ".join(f"{k} {v:.0f} s" for k, v in self.durations.items()) + f"; JSON: {self.args.json})")
        # Missed targets are information, not failure; a part that could not run is a failure.
        return 1 if any(r.measure.endswith(": error") for r in self.rows) else 0

def _exit_on_sigterm(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds through every `finally`, so whatever was started gets stopped


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with contextlib.suppress(ValueError):  # only possible in the main thread
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
        signal.signal(signal.SIGHUP, _exit_on_sigterm)
    return Bench(args).run()


if __name__ == "__main__":
    sys.exit(main())
