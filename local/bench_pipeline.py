"""The bench parts that drive the whole pipeline on a LocalStack: backfill, re-run of a loaded month, daily run.

Bling's real limits are scaled in time by `speedup`: the sandbox allows 3 × speedup requests per second, the
functions get BLING_RATE_BUDGET_PER_S = 2.8 × speedup, the sandbox latency is the real one ÷ speedup. Every
duration measured here is therefore speedup times shorter than it would be against the real Bling.

Where the time goes is read afterwards from three independent records:
  the sandbox's request log   (GET /__admin/requests: arrival, kind, status of every API call)
  the functions' JSON logs    ("message handled" lines carry duration_ms → concurrency per function over time;
                               window_listed / nfe_stored events → how many listed invoices wait for a detail call)
  the Firestore tick ledger   (`<prefix>_rate_ticks/<n>` documents: ticks claimed vs. ticks the span offered)
"""
from __future__ import annotations

import bisect
import calendar
import collections
import contextlib
import datetime
import itertools
import json
import statistics
import time
import urllib.request
from collections.abc import Callable, Iterable
from typing import Any

from local import stack as stack_mod
from local import verify
from local.bench_report import fewest_calls, gap_to_limit

REAL_RATE_PER_S = 3.0
REAL_BUDGET_PER_S = 2.8


def all_months(first: str = "2021-01", last: str = "2026-02") -> list[str]:
    year, month = int(first[:4]), int(first[5:7])
    out = []
    while f"{year:04d}-{month:02d}" <= last:
        out.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out


def range_message(months: list[str]) -> dict[str, str]:
    """One {"start", "end"} schedule message from the first day of the first month to the last of the last: the
    scheduler lists it in calendar-year windows (issue 13), where 62 month messages would list month by month."""
    year, month = int(months[-1][:4]), int(months[-1][5:7])
    last_day = calendar.monthrange(year, month)[1]
    return {"start": f"{months[0]}-01", "end": f"{months[-1]}-{last_day:02d}"}


class PipelineBench:
    def __init__(self, *, scale: float, speedup: float, seed: int = 42, real_latency_s: float = 0.15,
                 timeout_s: float = 1800.0, progress: Callable[[str], None] = lambda _m: None,
                 run: str | None = None, threads: int | None = None, profile: str = "history",
                 faults: dict[str, Any] | None = None, http_deadline_s: float | None = None,
                 quiet_s: float | None = None):
        self.scale, self.speedup, self.seed = scale, speedup, seed
        # Seconds without a function log line that count as "the pipeline has settled" after a backfill (5 s) and
        # after a re-run or daily run (4 s); the smoke test passes less, since it checks the rows, not the timing.
        self.settle_quiet_s = 5.0 if quiet_s is None else quiet_s
        self.run_quiet_s = 4.0 if quiet_s is None else quiet_s
        # The functions' total per-request deadline (BLING_HTTP_TIMEOUT_S, 5 s in production) scales with Bling's
        # speed like the latency and the limit do, but not below 1 s (a busy 2-core machine adds its own
        # delays); hangs are not scaled, so a hang costs a deadline where it would cost one at real speed.
        self.http_deadline_s = http_deadline_s if http_deadline_s is not None else max(1.0, 5.0 / speedup)
        self.profile = profile
        self.faults = dict(faults or {})  # set on the sandbox once the stack is authorized, before any run
        self.rate_per_s = REAL_RATE_PER_S * speedup
        self.budget_per_s = REAL_BUDGET_PER_S * speedup
        self.latency_s = real_latency_s / speedup
        self.timeout_s = timeout_s
        self.say = progress
        self.run = run
        self.threads = threads
        self.stack: stack_mod.LocalStack | None = None
        self.truth: dict[str, Any] = {}
        self.loaded_months: set[str] = set()
        self.startup_s = 0.0

    # -- lifecycle
    def start(self) -> PipelineBench:
        env = {"BLING_RATE_BUDGET_PER_S": f"{self.budget_per_s:g}",
               "BLING_HTTP_TIMEOUT_S": f"{self.http_deadline_s:g}"}
        if self.threads:
            env["THREADS"] = str(self.threads)
        started = time.monotonic()
        self.say(f"stack: starting ({self.profile} profile × {self.scale:g}, seed {self.seed}, sandbox "
                 f"{self.rate_per_s:g} req/s, latency {self.latency_s * 1000:g} ms, budget {self.budget_per_s:g} "
                 f"req/s, request deadline {self.http_deadline_s:g} s"
                 + (f", faults {json.dumps(self.faults)})" if self.faults else ")"))
        self.stack = stack_mod.LocalStack(
            self.run, profile=self.profile, seed=self.seed, rate_per_s=self.rate_per_s,
            latency_s=self.latency_s, function_env=env, sandbox_args=["--scale", repr(float(self.scale))])
        self.stack.start()
        self.stack.authorize()
        self.truth = verify.fetch_truth(self.stack.sandbox.url)
        if self.faults:
            self.stack.sandbox.faults(self.faults)
        self.startup_s = time.monotonic() - started
        self.say(f"stack: up and authorized in {self.startup_s:.1f} s (logs in {self.stack.run_dir / 'logs'})")
        return self

    def stop(self) -> None:
        if self.stack is not None:
            self.stack.stop()

    # -- helpers
    def _admin_json(self, path: str) -> Any:
        with urllib.request.urlopen(self.stack.sandbox.url + "/__admin/" + path, timeout=120) as response:
            return json.loads(response.read())

    def _publish_all(self, payloads: Iterable[dict]) -> None:
        publisher = self.stack.pubsub.publisher()
        topic = publisher.topic_path(self.stack.project, "bling-schedule")
        futures = [publisher.publish(topic, json.dumps(p, separators=(",", ":")).encode()) for p in payloads]
        for future in futures:
            future.result(timeout=60)

    def _check_alive(self) -> None:
        for fn in self.stack.functions.values():
            problem = fn.process.exit_problem() if fn.process else None
            if problem:
                raise RuntimeError(f"function {fn.name} died: {problem}")

    def _poll(self, predicate: Callable[[Any], bool], what: str, poll_s: float = 0.5) -> float:
        """Monotonic time at which predicate(conn) first held."""
        deadline = time.monotonic() + self.timeout_s
        while True:
            self._check_alive()
            conn = self.stack.postgres.connect()
            try:
                if predicate(conn):
                    return time.monotonic()
            finally:
                conn.close()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} not done after {self.timeout_s:.0f} s; logs in "
                                   f"{self.stack.run_dir / 'logs'}")
            time.sleep(poll_s)

    def _run_done(self, kind: str, since_wall: float, runs_expected: int = 1) -> Callable[[Any], bool]:
        """runs_expected runs of this kind created after since_wall exist, every window is listed (or failed),
        and no listed invoice of them still waits for the detail function."""

        def done(conn) -> bool:
            runs = verify._rows(conn, "SELECT run_id FROM etl_run WHERE tipo = %s AND criado_em >= to_timestamp(%s)",
                                (kind, since_wall - 1.0))
            if len(runs) < runs_expected:
                return False
            ids = [r[0] for r in runs]
            windows = verify._rows(conn, "SELECT status FROM etl_window WHERE run_id = ANY(%s)", (ids,))
            if not windows or any(w[0] not in ("listed", "failed") for w in windows):
                return False
            pending = verify._rows(conn, "SELECT count(*) FROM etl_window_nfe WHERE run_id = ANY(%s) "
                                         "AND resultado = 'listed'", (ids,))[0][0]
            return pending == 0

        return done

    def _requests_between(self, t0_wall: float, t1_wall: float | None = None) -> list[dict]:
        log = self._admin_json("requests")
        records = log.get("requests", log) if isinstance(log, dict) else log
        return [r for r in records if r.get("t_wall", 0) >= t0_wall - 0.5 and (t1_wall is None or
                                                                               r["t_wall"] <= t1_wall)]

    # -- measurements
    def backfill(self, months: list[str]) -> dict[str, Any]:
        stack = self.stack
        expected = verify.expected_from_truth(self.truth, months)
        fewest = fewest_calls(expected)
        stack.sandbox.reset_stats()
        self.say(f"backfill: publishing one range message {months[0]} … {months[-1]}; "
                 f"{len(expected.nfe)} NF-e, fewest calls {fewest['total']}")
        t0_wall, t0 = time.time(), time.monotonic()
        self._publish_all([range_message(months)])
        published_s = time.monotonic() - t0
        t_complete = self._poll(lambda conn: verify.is_complete(conn, self.truth, months), "backfill")
        wall_s = t_complete - t0
        t_complete_wall = t0_wall + wall_s
        self.say(f"backfill: database complete after {wall_s:.1f} s; waiting for the pipeline to settle")
        settle_s = verify.wait_for_pipeline(stack, self.truth, months, quiet_s=self.settle_quiet_s,
                                             timeout_s=self.timeout_s)
        self.loaded_months.update(months)
        stats = stack.sandbox.stats()
        records = self._requests_between(t0_wall)
        conn = stack.postgres.connect()
        try:
            report = verify.verify(conn, self.truth, months)
            duplicates = verify.duplicate_report(conn)
            counts = verify.db_counts(conn)
            outcomes = dict(verify._rows(conn, "SELECT resultado, count(*) FROM etl_window_nfe GROUP BY 1"))
            stored_ids = {r[0] for r in verify._rows(conn, "SELECT id FROM nfe")}
        finally:
            conn.close()
        # The stack has settled: a held message is in its hold subscription already (one 0.3 s watch of every route).
        dead = {t: len(m) for t, m in stack.dead_letters(timeout_s=0.3).items() if m}
        errors = [e.get("message", "")[:200] for e in stack.log_lines() if e.get("severity") in ("ERROR", "CRITICAL")]
        accepted_in_wall = sum(1 for r in records if r.get("counted") and r["t_wall"] <= t_complete_wall)
        accepted = sum(1 for r in records if r.get("counted"))
        by_kind = stats.get("requests_by_kind", {})
        result = {
            "months": len(months), "wall_s": wall_s, "publish_s": published_s, "settle_extra_s": settle_s,
            "requests_total": stats.get("requests_total"), "requests_accepted": accepted,
            "requests_accepted_until_complete": accepted_in_wall, "requests_by_kind": by_kind,
            "responses_429": stats.get("responses_429", 0), "responses_by_status": stats.get("responses_by_status"),
            "max_requests_in_any_1s": stats.get("max_requests_in_any_1s"), "ip_blocked": stats.get("ip_blocked"),
            "limit_per_s": self.rate_per_s, "budget_per_s": self.budget_per_s,
            "utilisation": accepted_in_wall / (wall_s * self.rate_per_s) if wall_s > 0 else None,
            "ideal_s": accepted / self.rate_per_s, "new_invoices": counts["nfe"],
            "expected_invoices": len(expected.nfe),
            "db_counts": counts, "outcomes": outcomes, "verify_ok": report.ok, "verify_problems": report.problems[:20],
            "duplicates": duplicates, "dead_letters": dead, "error_lines": len(errors), "error_samples": errors[:5],
        }
        n = max(1, counts["nfe"])
        result["calls_per_invoice_list_detail"] = (by_kind.get("nfe_list", 0) + by_kind.get("nfe_detail", 0)) / n
        result["calls_per_invoice_total"] = (stats.get("requests_total") or 0) / n
        result["nothing_lost"] = bool(report.ok and not duplicates and not dead)
        result["nfe_missing"] = len(set(expected.nfe) - stored_ids)
        result["fewest"] = fewest
        result["gap"] = gap_to_limit(result["requests_total"] or 0, wall_s, fewest["total"], self.rate_per_s)
        result["analysis"] = self.analyse(records, t0_wall, t_complete_wall)
        return result

    def rerun(self, month: str) -> dict[str, Any]:
        if month not in self.loaded_months:
            self.say(f"re-run: loading {month} first")
            self._publish_all([{"month": month}])
            self._poll(lambda conn: verify.is_complete(conn, self.truth, [month]), f"loading {month}")
            verify.wait_for_pipeline(self.stack, self.truth, [month], quiet_s=self.settle_quiet_s,
                                     timeout_s=self.timeout_s)
            self.loaded_months.add(month)
        return self._one_run([{"month": month}], "month", f"re-run of {month}")

    def rerun_history(self, months: list[str]) -> dict[str, Any]:
        """The loaded history's range published again: what a re-run costs when nothing changed."""
        result = self._one_run([range_message(months)], "range", f"re-run of {len(months)} loaded months")
        expected = verify.expected_from_truth(self.truth, months)
        result["months"] = len(months)
        result["nfe_in_range"] = len(expected.nfe)
        result["fewest_list_calls"] = fewest_calls(expected)["by_kind"]["nfe_list"]
        return result

    def daily(self) -> dict[str, Any]:
        return self._one_run([{"daily": True}], "daily", "daily run")

    def _one_run(self, payloads: list[dict], kind: str, what: str) -> dict[str, Any]:
        stack = self.stack
        conn = stack.postgres.connect()
        try:
            before = verify.db_counts(conn)
        finally:
            conn.close()
        stack.sandbox.reset_stats()
        self.say(f"{what}: publishing {json.dumps(payloads[0])}" + (f" and {len(payloads) - 1} more"
                                                                     if len(payloads) > 1 else ""))
        t0_wall, t0 = time.time(), time.monotonic()
        self._publish_all(payloads)
        t_done = self._poll(self._run_done(kind, t0_wall, len(payloads)), what)
        stack.wait_for_quiet(quiet_s=self.run_quiet_s, timeout_s=self.timeout_s)
        stats = stack.sandbox.stats()
        records = self._requests_between(t0_wall)
        conn = stack.postgres.connect()
        try:
            after = verify.db_counts(conn)
            runs = verify._rows(conn, "SELECT run_id, inicio, fim FROM etl_run WHERE tipo = %s AND "
                                      "criado_em >= to_timestamp(%s)", (kind, t0_wall - 1.0))
            ids = [r[0] for r in runs]
            outcomes = dict(verify._rows(conn, "SELECT resultado, count(*) FROM etl_window_nfe WHERE "
                                               "run_id = ANY(%s) GROUP BY 1", (ids,)))
        finally:
            conn.close()
        last_request = max((r["t_wall"] for r in records), default=None)
        result = {"payload": payloads[0], "messages": len(payloads), "wall_s": t_done - t0,
                  "window": [str(r[1]) + ".." + str(r[2]) for r in runs],
                  "requests_total": stats.get("requests_total"), "requests_by_kind": stats.get("requests_by_kind", {}),
                  "responses_429": stats.get("responses_429", 0), "outcomes": outcomes,
                  "db_unchanged": before == after, "db_before": before, "db_after": after,
                  "last_request_after_s": (last_request - t0_wall) if last_request else None}
        self.say(f"{what}: done in {result['wall_s']:.1f} s, {result['requests_total']} request(s) "
                 f"{result['requests_by_kind']}")
        return result

    # -- where the time went
    def analyse(self, records: list[dict], t0_wall: float, t1_wall: float) -> dict[str, Any]:
        out: dict[str, Any] = {}
        with contextlib.suppress(Exception):
            out["requests"] = analyse_requests(records, t0_wall, t1_wall, self.rate_per_s)
        with contextlib.suppress(Exception):
            out["functions"] = analyse_function_logs(self.stack.log_lines(), t0_wall, t1_wall)
        with contextlib.suppress(Exception):
            out["detail_backlog"] = analyse_backlog(self.stack.log_lines(), t0_wall, t1_wall)
        with contextlib.suppress(Exception):
            out["handler_time"] = analyse_handler_time(self.stack.log_lines(), t0_wall, t1_wall)
        with contextlib.suppress(Exception):
            out["ticks"] = self.analyse_ticks(records, t0_wall, t1_wall)
        with contextlib.suppress(Exception):
            out["firestore_create_s"] = self.probe_firestore_create()
        return out

    def probe_firestore_create(self, n: int = 40) -> dict[str, float]:
        """Round trip of one document create() on the emulator (what a tick claim costs), measured idle."""
        client = self.stack.firestore.client()
        collection = client.collection("bench_probe")
        times = []
        for i in range(n):
            started = time.perf_counter()
            collection.document(f"{time.time_ns()}-{i}").create({"i": i})
            times.append(time.perf_counter() - started)
        times.sort()
        return {"median": statistics.median(times), "p90": times[int(0.9 * (n - 1))], "max": times[-1],
                "tick_s": 1.0 / self.budget_per_s, "slack_s": 0.15 / self.budget_per_s}

    def analyse_ticks(self, records: list[dict], t0_wall: float, t1_wall: float) -> dict[str, Any]:
        client = self.stack.firestore.client()
        prefix = self.stack.function_env.get("FIRESTORE_PREFIX", "bling")
        ticks = sorted(int(d.get("tick")) for d in client.collection(f"{prefix}_rate_ticks").stream()
                       if d.get("tick") is not None)
        tick_s = 1.0 / self.budget_per_s
        in_span = [t for t in ticks if t0_wall <= t * tick_s <= t1_wall]
        sent = [r for r in records if r["t_wall"] <= t1_wall and r.get("kind") != "other"]
        first = min((r["t_wall"] for r in sent), default=t0_wall)
        active_in_span = [t for t in in_span if t * tick_s >= first]
        offered = (t1_wall - first) * self.budget_per_s
        return {"claimed_total": len(ticks), "claimed_in_wall": len(in_span),
                "claimed_after_first_request": len(active_in_span), "offered_after_first_request": offered,
                "sent_after_first_request": len(sent),
                "claimed_not_sent": max(0, len(active_in_span) - len(sent)),
                "unclaimed_share": (1 - len(active_in_span) / offered) if offered > 0 else None}


def analyse_requests(records: list[dict], t0_wall: float, t1_wall: float, limit: float) -> dict[str, Any]:
    within = sorted((r for r in records if r["t_wall"] <= t1_wall), key=lambda r: r["t_wall"])
    accepted = [r for r in within if r.get("counted")]
    if not accepted:
        return {"accepted": 0}
    first, last = accepted[0]["t_wall"], accepted[-1]["t_wall"]
    seconds = collections.Counter(int(r["t_wall"] - first) for r in accepted)
    span = max(1, int(t1_wall - first) + 1)
    per_second = [seconds.get(i, 0) for i in range(span)]
    phases = {}
    for kind in sorted({r["kind"] for r in accepted}):
        times = [r["t_wall"] for r in accepted if r["kind"] == kind]
        phases[kind] = {"n": len(times), "first_s": times[0] - t0_wall, "last_s": times[-1] - t0_wall}
    gaps = [b["t_wall"] - a["t_wall"] for a, b in itertools.pairwise(accepted)]
    tick = 1.0 / limit
    return {
        "accepted": len(accepted), "first_request_after_s": first - t0_wall, "last_request_after_s": last - t0_wall,
        "tail_after_last_request_s": t1_wall - last,
        "utilisation_while_requests_flow": len(accepted) / ((last - first) * limit) if last > first else None,
        "seconds_at_90pct_of_limit": sum(1 for c in per_second if c >= 0.9 * limit),
        "seconds_idle": sum(1 for c in per_second if c == 0), "seconds": span,
        "per_second": per_second, "phases": phases,
        "gap_median_s": statistics.median(gaps) if gaps else None,
        "time_in_gaps_over_3_ticks_s": sum(g - tick for g in gaps if g > 3 * tick),
    }


def _log_time(entry: dict) -> float | None:
    stamp = entry.get("time")
    if not stamp:
        return None
    try:
        return datetime.datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        return None


def analyse_function_logs(lines: list[dict], t0_wall: float, t1_wall: float) -> dict[str, Any]:
    """Per function: handled messages, their durations, and how many ran at once (from start = end − duration)."""
    spans: dict[str, list[tuple[float, float]]] = collections.defaultdict(list)
    for e in lines:
        if e.get("message") != "message handled" or "duration_ms" not in e:
            continue
        end = _log_time(e)
        if end is None or end < t0_wall:
            continue
        spans[e.get("_function", e.get("function", "?"))].append((end - e["duration_ms"] / 1000.0, end))
    out = {}
    span = max(1e-9, t1_wall - t0_wall)
    for name, items in spans.items():
        events = sorted([(s, 1) for s, _ in items] + [(e, -1) for _, e in items])
        level = peak = 0
        for _, delta in events:
            level += delta
            peak = max(peak, level)
        busy = sum(min(e, t1_wall) - max(s, t0_wall) for s, e in items if e > t0_wall and s < t1_wall)
        durations = sorted(e - s for s, e in items)
        out[name] = {"messages": len(items), "max_concurrent": peak, "mean_concurrent": busy / span,
                     "duration_median_s": statistics.median(durations),
                     "duration_p90_s": durations[int(0.9 * (len(durations) - 1))]}
    return out


def analyse_backlog(lines: list[dict], t0_wall: float, t1_wall: float) -> dict[str, Any]:
    """Invoices listed (window_listed events) but not yet handled by detail (nfe_stored events), over time."""
    listed, stored = [], []
    for e in lines:
        t = _log_time(e)
        if t is None or t < t0_wall or t > t1_wall:
            continue
        if e.get("event") == "window_listed":
            listed.append((t, int(e.get("nfe_listed") or 0)))
        elif e.get("event") == "nfe_stored":
            stored.append(t)
    listed.sort()
    stored.sort()
    if not listed:
        return {}
    listed_times = [t for t, _ in listed]
    cumulative = []
    total = 0
    for _, n in listed:
        total += n
        cumulative.append(total)
    samples = []
    t = t0_wall
    while t <= t1_wall:
        i = bisect.bisect_right(listed_times, t)
        have = cumulative[i - 1] if i else 0
        done = bisect.bisect_right(stored, t)
        samples.append(max(0, have - done))
        t += 0.25
    first_store = stored[0] if stored else None
    return {"listed": total, "stored_events": len(stored),
            "mean_backlog": statistics.fmean(samples) if samples else 0,
            "share_of_time_backlog_ge_8": sum(1 for s in samples if s >= 8) / len(samples) if samples else 0,
            "share_of_time_backlog_0": sum(1 for s in samples if s == 0) / len(samples) if samples else 0,
            "all_listed_after_s": listed_times[-1] - t0_wall, "first_store_after_s": (first_store - t0_wall)
            if first_store else None, "last_store_after_s": (stored[-1] - t0_wall) if stored else None}


def analyse_handler_time(lines: list[dict], t0_wall: float, t1_wall: float) -> dict[str, Any]:
    """Where a handler's time goes, per function, from its own log lines (one message's lines are sequential):
    `before_request` = from the message start or the previous step to a Bling request's start: mostly waiting for
    a rate-budget tick (claim + sleep until the tick), plus any local work done before the call;
    `http` = the Bling request itself (duration_ms of the client's "bling request" line);
    `store` = from a request's end to the detail function's "NF-e stored" line (upsert + audit in PostgreSQL);
    `rest` = after the last step until the handler returned (enrich's writes, publishing)."""
    by_message: dict[tuple[str, str], list[dict]] = collections.defaultdict(list)
    for e in lines:
        fn, mid = e.get("_function"), e.get("message_id")
        if fn and mid:
            by_message[(fn, str(mid))].append(e)
    totals: dict[str, dict[str, float]] = collections.defaultdict(lambda: collections.defaultdict(float))
    for (fn, _mid), events in by_message.items():
        done = [e for e in events if e.get("message") == "message handled" and "duration_ms" in e]
        if not done:
            continue
        end = _log_time(done[-1])
        if end is None or end < t0_wall or end > t1_wall + 5:
            continue
        start = end - done[-1]["duration_ms"] / 1000.0
        cursor = start
        acc = totals[fn]
        for e in sorted(events, key=lambda x: x.get("time", "")):
            t = _log_time(e)
            if t is None or t < start:
                continue
            if e.get("event") == "bling_request" and "duration_ms" in e:
                began = t - e["duration_ms"] / 1000.0
                acc["before_request_s"] += max(0.0, began - cursor)
                acc["http_s"] += e["duration_ms"] / 1000.0
                acc["requests"] += 1
                cursor = t
            elif e.get("event") == "nfe_stored":
                acc["store_s"] += max(0.0, t - cursor)
                cursor = t
        acc["rest_s"] += max(0.0, end - cursor)
        acc["busy_s"] += end - start
        acc["messages"] += 1
    out = {}
    for fn, acc in totals.items():
        busy = acc["busy_s"] or 1e-9
        out[fn] = {**{k: round(v, 3) for k, v in acc.items()},
                   "share_before_request": acc["before_request_s"] / busy, "share_http": acc["http_s"] / busy,
                   "share_store": acc["store_s"] / busy, "share_rest": acc["rest_s"] / busy,
                   "before_request_per_call_ms": 1000 * acc["before_request_s"] / acc["requests"]
                   if acc["requests"] else None}
    return out
