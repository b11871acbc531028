"""One LocalStack for every chaos scenario of a module (starting one costs ~15 s; the scenarios reset what they
touch instead): real PostgreSQL, the Pub/Sub and Firestore emulators, the Bling sandbox as a subprocess and each
function as a functions-framework process, with push retries after 1 s and 5 delivery attempts.

Time is scaled ×10 where the scenario is not about the rate limit: the sandbox allows 30 req/s and the functions'
budget is 28/s (Bling: 3 and 2.8). Small pages and batches (5 per page, 3 ids per message) make more messages and
more pages, so a fault lands in the middle of something.
"""
from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from local import stack as local_stack
from local import verify
from local.stack import DEFAULT_ACCOUNT, LocalStack, MissingDependency
from local.stack.postgres import quote_table
from shared.accounts import schema_for
from shared.bling import token_store
from tests import two_accounts
from tests.log_checks import json_lines

SCALED_RATE = 30.0
FUNCTION_ENV = {"BLING_RATE_BUDGET_PER_S": "28", "IDS_PER_MESSAGE": "3", "LIST_PAGE_SIZE": "5"}
MONTHS = ("2026-01", "2026-02")
IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


class Chaos:
    """The stack plus what every scenario needs: a clean start, the truth, waiting, checking, and the log lines
    written since the scenario began."""

    def __init__(self, stack: LocalStack):
        self.stack = stack
        self.seed_tables = self._seeded_tables()
        self.secrets_seen: set[str] = set()
        self._marks: dict[str, int] = {}
        self.started = 0.0
        self.truth: dict[str, Any] = {}

    # -- setup
    def _seeded_tables(self) -> set[str]:
        conn = self.stack.postgres.connect()
        try:
            cur = conn.cursor()
            seeded = {"schema_migrations"}
            for table in self.stack.postgres.tables():
                cur.execute(f"SELECT EXISTS (SELECT 1 FROM {quote_table(table)})")  # names from information_schema
                if cur.fetchone()[0]:
                    seeded.add(table.rsplit(".", 1)[-1])  # bare: kept in every account schema
            return seeded
        finally:
            conn.close()

    def begin(self) -> Chaos:
        """Quiet stack, no faults, empty data tables, no dead letters, authorized, fresh sandbox stats."""
        sandbox = self.stack.sandbox
        sandbox.faults({})
        sandbox.admin("config", {"latency_s": 0, "rate_per_s": SCALED_RATE})
        sandbox.admin("unblock", {})
        if not self.stack.postgres.is_running():
            self.stack.postgres.start()
        self.stack.wait_for_quiet(quiet_s=2, timeout_s=180)
        self.stack.dead_letters(timeout_s=0.2)
        self.stack.postgres.truncate_all(keep=self.seed_tables)
        self._drop_enrich_claims()
        if self.status().get("reauth_required", True):
            self.stack.authorize()
        self.remember_tokens()
        sandbox.reset_stats()
        self.truth = verify.fetch_truth(sandbox.url)
        self._marks = {name: self._size(path) for name, path in self.stack.log_paths().items()}
        self.started = time.monotonic()
        return self

    def _drop_enrich_claims(self) -> None:
        """A SIGKILLed enrich instance leaves claims on what it had already stored; they expire in 5 minutes and
        are harmless while the rows exist (fresh rows are not fetched again), but the next scenario empties the
        tables, and a live claim would then make its messages skip those contacts and SKUs."""
        for snapshot in self.stack.firestore.client().collection("bling_enrich_claims").stream():
            snapshot.reference.delete()

    @staticmethod
    def _size(path: Path) -> int:
        try:
            return path.stat().st_size
        except OSError:
            return 0

    # -- observing
    def elapsed(self) -> float:
        return round(time.monotonic() - self.started, 1)

    def status(self) -> dict[str, Any]:
        return self.stack.auth_status()  # as the operator: /status needs the admin key (ADR 007)

    def stats(self) -> dict[str, Any]:
        return self.stack.sandbox.stats()

    def calls(self, kind: str) -> int:
        return int(self.stats()["requests_by_kind"].get(kind, 0))

    def _text_since_begin(self, name: str, path: Path) -> str:
        with open(path, "rb") as handle:
            handle.seek(self._marks.get(name, 0))
            return handle.read().decode("utf-8", errors="replace")

    def lines(self, functions: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """JSON log lines the functions wrote since begin()."""
        return [entry for name, path in self.stack.log_paths().items()
                if functions is None or name in functions
                for entry in json_lines(name, self._text_since_begin(name, path))]

    def remember_tokens(self) -> None:
        """Every token pair the store ever held, for the no-secret-in-logs check at the end of the module."""
        doc = self.stack.firestore.client().collection("bling_oauth").document(DEFAULT_ACCOUNT).get()
        data = doc.to_dict() or {} if doc.exists else {}
        # Stored encrypted (ADR 008): what a leak would show is the plain token, so that is what is looked for.
        plain = token_store.decrypted_tokens(data, self.stack.token_key, "bling", DEFAULT_ACCOUNT) if data else {}
        self.secrets_seen |= {value for value in plain.values() if value}

    def parked(self) -> list[dict[str, Any]]:
        return [s.to_dict() for s in self.stack.firestore.client().collection("bling_parked").stream()]

    # -- acting
    def publish_months(self, months: Iterable[str] = MONTHS) -> None:
        for month in months:
            self.stack.publish("bling-schedule", {"month": month})

    def wait_until(self, predicate: Callable[[], bool], timeout_s: float = 60, what: str = "") -> float:
        start = time.monotonic()
        while not predicate():
            if time.monotonic() - start > timeout_s:
                raise TimeoutError(f"not reached after {timeout_s:.0f}s: {what}\n{self.diagnosis()}")
            time.sleep(0.1)
        return time.monotonic() - start

    def settle(self, months: Iterable[str] = MONTHS, timeout_s: float = 240) -> float:
        start = time.monotonic()
        try:
            verify.wait_for_pipeline(self.stack, self.truth, list(months), quiet_s=3, timeout_s=timeout_s)
            return time.monotonic() - start
        except TimeoutError as exc:
            conn = self.stack.postgres.connect()
            try:
                summary = verify.verify(conn, self.truth, list(months)).summary()
            finally:
                conn.close()
            dead = {t: [m["data"] for m in ms] for t, ms in self.stack.dead_letters(timeout_s=0.3).items() if ms}
            raise TimeoutError(f"{exc}\n{summary}\ndead letters: {dead}\n{self.diagnosis()}") from None

    def diagnosis(self, per_function: int = 6) -> str:
        """What a timed-out scenario was doing, for the failure message (CI shows the message, not .stack/):
        Bling calls by kind, whether each function process is alive and its last log lines since begin()
        (tracebacks included), and the end of the Pub/Sub emulator's log."""
        out = []
        with contextlib.suppress(Exception):
            out.append(f"sandbox calls: {self.stats().get('requests_by_kind')}")
        for name, fn in sorted(self.stack.functions.items()):
            alive = fn.process.running() if fn.process else False
            tail_lines = self._text_since_begin(name, fn.log_path).splitlines()[-per_function:]
            out.append(f"-- {name} ({'alive' if alive else 'NOT RUNNING'}), last lines:")
            out.extend("   " + _compact(line) for line in tail_lines)
        with contextlib.suppress(Exception):
            emulator_tail = self.stack.pubsub.log_path.read_text(errors="replace").splitlines()[-8:]
            out.append(f"-- pubsub emulator ({self.stack.pubsub.log_path}), last lines:")
            out.extend("   " + line[:300] for line in emulator_tail)
        return "\n".join(out)

    def check(self, months: Iterable[str] = MONTHS) -> tuple[verify.Report, list[str], dict[str, list]]:
        """(verify report, duplicate report, dead letters by topic) — the end of every scenario."""
        conn = self.stack.postgres.connect()
        try:
            report = verify.verify(conn, verify.fetch_truth(self.stack.sandbox.url), list(months))
            duplicates = verify.duplicate_report(conn)
        finally:
            conn.close()
        dead = {t: m for t, m in self.stack.dead_letters(timeout_s=0.3).items() if m}
        self.remember_tokens()
        return report, duplicates, dead

    def sql(self, statement: str, params: tuple = ()) -> list[tuple]:
        conn = self.stack.postgres.connect()
        try:
            cur = conn.cursor()
            cur.execute(statement, params)
            rows = list(cur.fetchall()) if cur.description else []
            conn.commit()
            return rows
        finally:
            conn.close()


def _compact(line: str) -> str:
    """One log line in a few words: time, severity, message and the ids that place it."""
    try:
        entry = json.loads(line)
    except ValueError:
        return line[:200]
    if not isinstance(entry, dict):
        return line[:200]
    where = " ".join(f"{k}={entry[k]}" for k in ("message_id", "window", "nfe_id", "status") if k in entry)
    return f"{str(entry.get('time', ''))[11:23]} {entry.get('severity')} {str(entry.get('message'))[:140]} {where}"


class AccountsChaos(Chaos):
    """Chaos on a stack whose sandbox serves several companies, each connected as its own pipeline account
    (issue 14): begin() resets and connects every account, and the checks run per account schema against that
    account's truth (tests/two_accounts.py holds the contract they read)."""

    def __init__(self, stack: LocalStack, accounts: Iterable[str]):
        super().__init__(stack)
        self.accounts = list(accounts)
        self.truths: dict[str, dict[str, Any]] = {}

    def begin(self) -> Chaos:
        sandbox = self.stack.sandbox
        sandbox.admin("unblock", {})
        for account in self.accounts:
            sandbox.faults({}, account=account)
            sandbox.configure({"latency_s": 0, "rate_per_s": SCALED_RATE}, account=account)
        if not self.stack.postgres.is_running():
            self.stack.postgres.start()
        self.stack.wait_for_quiet(quiet_s=2, timeout_s=180)
        self.stack.dead_letters(timeout_s=0.2)
        self.stack.postgres.truncate_all(keep=self.seed_tables)
        for account in self.accounts:
            self._truncate_schema(schema_for(account))
        self._drop_enrich_claims()
        for account in self.accounts:
            if self._needs_authorization(account):
                self.stack.authorize(account=account)
        self.remember_tokens()
        sandbox.reset_stats()
        self.truths = two_accounts.truths(self.stack, self.accounts)
        self._marks = {name: self._size(path) for name, path in self.stack.log_paths().items()}
        self.started = time.monotonic()
        return self

    def _needs_authorization(self, account: str) -> bool:
        try:
            return bool(self.account_status(account).get("reauth_required", True))
        except AssertionError:  # not listed yet: never connected
            return True

    def _truncate_schema(self, schema: str) -> None:
        conn = self.stack.postgres.connect()
        try:
            cur = conn.cursor()
            cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
                        "AND table_type = 'BASE TABLE'", (schema,))
            names = [r[0] for r in cur.fetchall() if r[0] not in self.seed_tables]
            if names:
                cur.execute("SELECT set_config('search_path', %s, true)", (schema,))
                # names from information_schema, quoted
                cur.execute("TRUNCATE " + ", ".join(f'"{n}"' for n in names) + " RESTART IDENTITY CASCADE")
            conn.commit()
        finally:
            conn.close()

    def account_status(self, account: str) -> dict[str, Any]:
        return two_accounts.account_status(self.stack.auth_status(), account)

    def account_stats(self, account: str) -> dict[str, Any]:
        return self.stack.sandbox.stats(account=account)

    def account_calls(self, account: str, kind: str) -> int:
        return int(self.account_stats(account)["requests_by_kind"].get(kind, 0))

    def remember_tokens(self) -> None:
        self.secrets_seen |= two_accounts.stored_tokens(self.stack)

    def parked(self) -> list[dict[str, Any]]:
        return two_accounts.parked(self.stack)

    def publish_months(self, months: Iterable[str] = MONTHS, accounts: Iterable[str] | None = None) -> None:
        for month in months:
            for account in accounts or self.accounts:
                self.stack.publish("bling-schedule", {"month": month, "account": account})

    def settle(self, months: Iterable[str] = MONTHS, timeout_s: float = 240,
               accounts: Iterable[str] | None = None) -> float:
        start = time.monotonic()
        wanted = list(accounts or self.accounts)
        try:
            verify.wait_for_accounts(self.stack, two_accounts.by_schema({a: self.truths[a] for a in wanted}),
                                     list(months), quiet_s=3, timeout_s=timeout_s)
            return time.monotonic() - start
        except TimeoutError as exc:
            reports, _, dead = self.check_accounts(months, wanted)
            summaries = "\n".join(r.summary() for r in reports.values())
            raise TimeoutError(f"{exc}\n{summaries}\ndead letters: {dead}\n{self.diagnosis()}") from None

    def check_accounts(self, months: Iterable[str] = MONTHS, accounts: Iterable[str] | None = None
                       ) -> tuple[dict[str, verify.Report], dict[str, list[str]], dict[str, list]]:
        """Per account: (verify report, duplicates + rows of another account), and the dead letters by topic."""
        reports, problems = {}, {}
        conn = self.stack.postgres.connect()
        try:
            for account in accounts or self.accounts:
                schema = schema_for(account)
                reports[account] = verify.verify(conn, self.truths[account], list(months), schema=schema)
                problems[account] = verify.duplicate_report(conn, schema=schema) + [
                    p for other in self.accounts if other != account
                    for p in verify.foreign_rows(conn, self.truths[other], schema=schema)]
        finally:
            conn.close()
        dead = {t: m for t, m in self.stack.dead_letters(timeout_s=0.3).items() if m}
        self.remember_tokens()
        return reports, problems, dead


@pytest.fixture(scope="module")
def chaos(request: pytest.FixtureRequest) -> Iterator[Chaos]:
    """The module's chaos stack; a module that sets SANDBOX_ACCOUNTS (local.stack.sandbox.AccountSpec list) gets
    a sandbox serving those companies and an AccountsChaos."""
    accounts = getattr(request.module, "SANDBOX_ACCOUNTS", None)
    try:
        for check in (local_stack.postgres_bin_dir, local_stack.check_pubsub_emulator,
                      local_stack.check_firestore_emulator):
            check()
    except MissingDependency as exc:
        if IN_CI:
            pytest.fail(f"CI=true and a required tool is missing: {exc}", pytrace=False)
        pytest.skip(str(exc))
    stack = LocalStack(profile="small", rate_per_s=SCALED_RATE, function_env=FUNCTION_ENV,
                       ack_deadline_s=30, handle_signals=False, sandbox_accounts=accounts).start()
    try:
        yield AccountsChaos(stack, [spec.name for spec in accounts]) if accounts else Chaos(stack)
    finally:
        stack.stop()
