"""LocalStack: PostgreSQL, the two emulators, the Bling sandbox and every function, composed and wired like
production, started in dependency order and stopped together (on exit, exceptions, Ctrl-C and SIGTERM)."""
from __future__ import annotations

import contextlib
import os
import secrets
import signal
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Self, TypeVar

from local.processes import StopAtExit, pid_alive, port_is_free
from local.stack import logs
from local.stack.auth import auth_status, authorize_through_auth_function
from local.stack.base import DEFAULT_ACCOUNT, DEFAULT_PROJECT, REPO_ROOT, ChildProcessComponent, new_run_dir
from local.stack.emulators import FirestoreEmulator, PubSubEmulator
from local.stack.functions import FunctionServer, function_servers
from local.stack.postgres import PostgresCluster
from local.stack.pubsub import create_topology, publish_json, pull_all, push_endpoint
from local.stack.push_relay import PushRelay
from local.stack.sandbox import AccountSpec, Sandbox
from shared.accounts import schema_for

if TYPE_CHECKING:
    import pg8000.dbapi

_live_stacks: StopAtExit[LocalStack] = StopAtExit()
C = TypeVar("C")


def _quietly(action: Callable[[], None]) -> None:
    """Run a stop step; a failure must not keep the other components running."""
    with contextlib.suppress(Exception):
        action()


def _started(component: C | None, what: str) -> C:
    """A component of a started stack: a clear error before start() instead of an AttributeError on None."""
    if component is None:
        raise RuntimeError(f"the stack has no {what}: call start() first")
    return component



class LocalStack:
    """PostgreSQL + Pub/Sub + Firestore emulators + Bling sandbox + every function, wired like production.

    Parameters
      run            name of the run directory under .stack/ (generated when None; "demo" for make demo)
      profile, seed, rate_per_s, latency_s, sandbox_in_process: the Bling sandbox; sandbox_args adds to its
                     command line (e.g. ["--scale", "0.1"]); sandbox_accounts: several companies
                     (local.stack.sandbox.AccountSpec), instead of one from profile/seed
      functions      names from shared.topology.ALL_FUNCTIONS to start (default: all); extra_functions adds
                     {name: (entry_point, signature_type, source_path)} e.g. test doubles
      ack_deadline_s push ack deadline (the route's when None); failed pushes are retried after 1 s (see
                     create_topology for why there is no retry policy locally)
      function_env   extra environment for every function (e.g. BLING_RATE_BUDGET_PER_S, THREADS)
      push_concurrency {function: loops}: deliver through a local.stack.push_relay.PushRelay with that many
                     messages in flight per function (push_relay.PRODUCTION_MAX_INSTANCES is production's) instead
                     of the emulator's push (two at once per subscription)
      message_ordering message ordering on the subscriptions that have it in production (ADR 014); off by default,
                     because the emulator then never dead-letters (local.stack.pubsub.create_topology)
      keep_pgdata    leave the stopped cluster's data directory in .stack/<run>/pgdata (make demo does)
      project        the Google Cloud project id used with the emulators

    The Pub/Sub emulator pushes at most 2 messages at once per subscription, so a local run without
    push_concurrency is less parallel than production (docs/BENCHMARKS.md).
    """

    def __init__(self, run: str | None = None, *, profile: str = "small", seed: int = 42, rate_per_s: float = 3.0,
                 latency_s: float = 0.0, sandbox_in_process: bool = False, sandbox: bool = True,
                 sandbox_args: Iterable[str] = (), sandbox_accounts: Sequence[AccountSpec] | None = None,
                 functions: Iterable[str] | None = None,
                 extra_functions: Mapping[str, tuple[str, str, str | Path]] | None = None,
                 ack_deadline_s: int | None = None, function_env: Mapping[str, str] | None = None,
                 push_concurrency: Mapping[str, int] | None = None, message_ordering: bool = False,
                 keep_pgdata: bool = False, project: str = DEFAULT_PROJECT, handle_signals: bool = True) -> None:
        from shared import topology
        from shared.bling import token_crypto

        self.run_name = run
        self.profile, self.seed, self.rate_per_s, self.latency_s = profile, seed, rate_per_s, latency_s
        self.sandbox_in_process = sandbox_in_process
        self.with_sandbox = sandbox
        self.sandbox_args = list(sandbox_args)
        self.sandbox_accounts = list(sandbox_accounts or [])
        self.function_names = list(functions) if functions is not None else list(topology.ALL_FUNCTIONS)
        self.extra_functions = dict(extra_functions or {})
        self.ack_deadline_s = ack_deadline_s
        self.function_env = dict(function_env or {})
        self.push_concurrency = dict(push_concurrency) if push_concurrency else None
        self.push_relay: PushRelay | None = None
        self.message_ordering = message_ordering
        # The key of the stored Bling tokens (ADR 008): random per stack, as Secret Manager holds one per project.
        self.token_key = token_crypto.new_key()
        self.keep_pgdata = keep_pgdata
        self.project = project
        # The operator's key for the auth function's /start and /status (ADR 007): random per stack, given to the
        # auth function only (as production's Secret Manager secret is) and to whoever drives the consent.
        self.auth_admin_key = secrets.token_urlsafe(32)
        self.handle_signals = handle_signals
        self.run_dir: Path | None = None
        self.postgres: PostgresCluster | None = None
        self.pubsub: PubSubEmulator | None = None
        self.firestore: FirestoreEmulator | None = None
        self.sandbox: Sandbox | None = None
        self.functions: dict[str, FunctionServer] = {}
        self._all_pids: set[int] = set()
        self._ports: set[int] = set()
        self._previous_handlers: dict[int, Any] = {}
        self._started_at = 0.0
        self._stopped = True

    # -- lifecycle
    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> Self:
        self._stopped = False
        self._started_at = time.monotonic()
        _live_stacks.add(self)
        self._install_signal_handlers()
        try:
            self._start_components()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_components(self) -> None:
        """Launch everything that takes long first and wait for readiness late, so the JVMs, initdb and the
        functions' imports overlap."""
        run_dir = self.run_dir = new_run_dir(self.run_name)
        logs_dir = run_dir / "logs"
        # Ports first: the sandbox must know the auth function's callback URL, the functions the sandbox's URL.
        self.functions = function_servers(self.function_names, self.extra_functions, logs_dir)
        postgres = self.postgres = PostgresCluster(run_dir / "pgdata", logs_dir / "postgres.log")
        pubsub = self.pubsub = PubSubEmulator(logs_dir / "pubsub-emulator.log", self.project).launch()
        firestore = self.firestore = FirestoreEmulator(logs_dir / "firestore-emulator.log", self.project).launch()
        self._track()
        postgres.start()
        self._track()
        if self.with_sandbox:
            self.sandbox = Sandbox(run_dir, profile=self.profile, seed=self.seed,
                                            rate_per_s=self.rate_per_s, latency_s=self.latency_s,
                                            redirect_uri=self.auth_url + "/callback" if self.auth_url else "",
                                            in_process=self.sandbox_in_process,
                                            extra_args=self.sandbox_args,
                                            accounts=self.sandbox_accounts).launch()
            self._track()
        postgres.migrate()
        # The stack's first account, as an upgraded deployment has it (the tables in its schema, public empty);
        # connect() reads it unless told otherwise.
        postgres.accounts_db("adopt", DEFAULT_ACCOUNT)
        postgres.default_schema = schema_for(DEFAULT_ACCOUNT)
        pubsub.wait_ready()
        firestore.wait_ready()
        if self.sandbox:
            self.sandbox.wait_ready()
        for fn in self.functions.values():
            fn.extra_env = {**self.function_process_env(fn.name), **fn.extra_env}
            fn.launch()
        self._write_admin_key()
        self._track()
        for fn in self.functions.values():
            fn.wait_ready()
        self.create_topology()

    def _write_admin_key(self) -> None:
        """.stack/<run>/auth-admin-key (mode 600), so a human can open <auth>/start of a running stack by hand."""
        path = _started(self.run_dir, "run directory") / "auth-admin-key"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(self.auth_admin_key + "\n")

    def _track(self) -> None:
        for component in self.components():
            self._all_pids |= component.pids()
            port = getattr(component, "port", None)
            if port:
                self._ports.add(port)
        if self.sandbox and self.sandbox.url:
            self._ports.add(int(self.sandbox.url.rsplit(":", 1)[1]))

    def components(self) -> list[PostgresCluster | ChildProcessComponent]:
        return [c for c in (self.postgres, self.pubsub, self.firestore, self.sandbox, *self.functions.values())
                if c is not None]

    def create_topology(self) -> None:
        create_topology(self._pubsub(), {name: fn.url for name, fn in self.functions.items()}, project=self.project,
                        ack_deadline_s=self.ack_deadline_s, push=self.push_concurrency is None,
                        message_ordering=self.message_ordering)
        if self.push_concurrency is not None and self.push_relay is None:
            self.push_relay = self._push_relay(self.push_concurrency).start()

    def _push_relay(self, concurrency: Mapping[str, int]) -> PushRelay:
        from shared import topology

        subscriber = self._pubsub().subscriber()
        routes = {r.function: (subscriber.subscription_path(self.project, r.subscription),
                               push_endpoint(self.functions[r.function].url, self.project, r.topic))
                  for r in topology.ROUTES if r.function in self.functions}
        deadlines = {r.function: float(self.ack_deadline_s or r.ack_deadline_s) for r in topology.ROUTES}
        return PushRelay(subscriber, routes, concurrency, deadlines)

    def stop(self) -> None:
        """Stop every process (all components at once; PostgreSQL destroyed unless keep_pgdata). Safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        if self.push_relay is not None:
            _quietly(self.push_relay.stop)
            self.push_relay = None
        self._track()
        # Side by side, not one after another: each component may take its whole stop timeout (SIGTERM, wait,
        # SIGKILL) on a loaded machine, and a CI job cancelled with SIGTERM has a grace period to respect.
        stoppers = [threading.Thread(target=_quietly, args=(component.stop,), name=f"stop-{type(component).__name__}")
                    for component in [*self.functions.values(), self.sandbox, self.firestore, self.pubsub]
                    if component is not None]
        if self.postgres is not None:
            stoppers.append(threading.Thread(target=_quietly, args=(self._stop_postgres,), name="stop-postgres"))
        for thread in stoppers:
            thread.start()
        for thread in stoppers:
            thread.join()
        self._restore_signal_handlers()
        _live_stacks.discard(self)

    def _stop_postgres(self) -> None:
        postgres = _started(self.postgres, "PostgreSQL")
        if self.keep_pgdata:
            postgres.close()
        else:
            postgres.destroy()

    def _install_signal_handlers(self) -> None:
        if not self.handle_signals or threading.current_thread() is not threading.main_thread():
            return

        def on_signal(signum: int, frame: FrameType | None) -> None:
            self.stop()
            previous = self._previous_handlers.get(signum)
            if callable(previous):
                previous(signum, frame)
            raise SystemExit(128 + signum)

        for signum in (signal.SIGTERM, signal.SIGHUP):
            with contextlib.suppress(ValueError, OSError):
                self._previous_handlers[signum] = signal.signal(signum, on_signal)

    def _restore_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum, handler in self._previous_handlers.items():
            with contextlib.suppress(ValueError, OSError, TypeError):
                signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous_handlers.clear()

    def connect(self, account: str | None = None) -> pg8000.dbapi.Connection:
        """A new connection to the stack's database as the application user, reading `account`'s tables
        (default: DEFAULT_ACCOUNT's)."""
        return _started(self.postgres, "PostgreSQL").connect(schema_for(account) if account else None)

    def _pubsub(self) -> PubSubEmulator:
        return _started(self.pubsub, "Pub/Sub emulator")

    # -- chaos helpers
    def restart_postgres(self, mode: str = "fast") -> None:
        """Stop and start the database on the same port (functions see broken connections, then reconnect)."""
        _started(self.postgres, "PostgreSQL").restart(mode=mode)
        self._track()

    def kill_function(self, name: str) -> None:
        """SIGKILL a function process (an instance dying mid-request); restart_function() brings it back."""
        process = self.functions[name].process
        if process and process.popen and process.running():
            os.killpg(process.popen.pid, signal.SIGKILL)
            process.popen.wait(timeout=10)

    def restart_function(self, name: str) -> None:
        """Stop (or after kill_function) and start a function again on the same port with the same environment."""
        self.functions[name].stop()
        self.functions[name].start()
        self._track()

    # -- introspection
    def pids(self) -> set[int]:
        """Every PID this stack started (the postmaster included), live or not."""
        self._track()
        return set(self._all_pids)

    def ports(self) -> set[int]:
        self._track()
        return set(self._ports)

    def leftovers(self) -> dict[str, set[int]]:
        """After stop(): PIDs still alive and ports still taken (both should be empty)."""
        return {"pids": {p for p in self._all_pids if pid_alive(p)},
                "ports": {p for p in self._ports if not port_is_free(p)}}

    @property
    def auth_url(self) -> str:
        fn = self.functions.get("auth")
        return fn.url if fn else ""

    def function_url(self, name: str) -> str:
        return self.functions[name].url

    def elapsed_s(self) -> float:
        return time.monotonic() - self._started_at

    def env(self) -> dict[str, str]:
        """What an in-process client (a test, the demo) needs to talk to this stack."""
        env = {"GOOGLE_CLOUD_PROJECT": self.project}
        for component in (self.postgres, self.pubsub, self.firestore):
            if component is not None:
                env.update(component.env())
        if self.sandbox is not None and self.sandbox.url:
            env.update(self.sandbox.env())
        if self.auth_url:
            env["AUTH_PUBLIC_URL"] = self.auth_url
        env["BLING_TOKEN_KEY"] = self.token_key
        return env

    def function_process_env(self, name: str = "") -> dict[str, str]:
        """The environment of function `name`: the stack's, function_env, and the secrets as Terraform gives them."""
        env = {**self.env(), "PYTHONPATH": str(REPO_ROOT), **self.function_env}
        if name == "scheduler":
            env.pop("BLING_TOKEN_KEY", None)  # as in Terraform: only the functions that call Bling get the key
        if name == "auth":  # as in Terraform: the operator's key is the auth function's only
            env["AUTH_ADMIN_KEY"] = self.auth_admin_key
        return env

    # -- logs
    def log_paths(self) -> dict[str, Path]:
        return {name: fn.log_path for name, fn in self.functions.items()}

    def log_text(self, names: Iterable[str] | None = None, include_infra: bool = False) -> str:
        paths = dict(self.log_paths())
        if include_infra and self.run_dir:
            for path in (self.run_dir / "logs").glob("*.log"):
                paths.setdefault(path.stem, path)
        return logs.read_logs(paths, names)

    def log_lines(self, names: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Every JSON log line the functions wrote, each with `_function` added (non-JSON lines are skipped)."""
        return logs.json_log_lines(self.log_paths(), names)

    def last_log_activity(self) -> float:
        """Wall-clock time of the most recent write to any function log."""
        return logs.last_write(self.log_paths().values())

    def wait_for_quiet(self, quiet_s: float = 8.0, timeout_s: float = 300.0,
                       predicate: Callable[[], bool] | None = None, poll_s: float = 0.5) -> float:
        """Return (seconds waited) once no function wrote a log line for quiet_s seconds and predicate() is true.

        Raises TimeoutError naming what was still happening; RuntimeError if a function process died."""
        start = time.monotonic()
        deadline = start + timeout_s
        predicate_error = ""
        while True:
            for fn in self.functions.values():
                problem = fn.process.exit_problem() if fn.process else None
                if problem:
                    raise RuntimeError(f"function {fn.name} died: {problem}")
            idle = time.time() - self.last_log_activity()
            ok = True
            if idle >= quiet_s and predicate is not None:
                try:
                    ok = bool(predicate())
                    predicate_error = "" if ok else "predicate still false"
                except Exception as exc:  # noqa: BLE001 - report it in the timeout message
                    ok, predicate_error = False, f"predicate raised {type(exc).__name__}: {exc}"
            if idle >= quiet_s and ok:
                return time.monotonic() - start
            if time.monotonic() > deadline:
                detail = logs.busiest(self.log_paths(), now=time.time())
                raise TimeoutError(f"stack not quiet after {timeout_s:.0f}s (want {quiet_s:.0f}s without logs; "
                                   f"{detail or 'no logs'}; {predicate_error or 'logs still moving'}); "
                                   f"logs in {self.run_dir}/logs")
            time.sleep(poll_s)

    # -- messaging
    def publish(self, topic: str, payload: Any, **attributes: str) -> str:
        return publish_json(self._pubsub(), topic, payload, project=self.project, **attributes)

    def pull(self, subscription: str, **kwargs: Any) -> list[dict[str, Any]]:
        return pull_all(self._pubsub(), subscription, project=self.project, **kwargs)

    def dead_letters(self, timeout_s: float = 2.0) -> dict[str, list[dict[str, Any]]]:
        """Pull (and ack) every dead-letter hold subscription: {topic: [messages]}. Every hold is watched for the
        whole timeout_s, all of them at once (one after the other, an empty check cost timeout_s per route)."""
        from shared import topology

        held: dict[str, list[dict[str, Any]]] = {r.topic: [] for r in topology.ROUTES}
        deadline = time.monotonic() + timeout_s
        while True:
            for route in topology.ROUTES:
                held[route.topic] += self.pull(route.dead_letter_subscription, timeout_s=0)
            if time.monotonic() >= deadline:
                return held
            time.sleep(0.05)

    # -- OAuth
    def authorize(self, timeout_s: float = 30.0, replace: bool = False, account: str | None = None,
                  bling_account: str | None = None) -> dict[str, Any]:
        """Do the consent like the operator: <auth>/start with the admin key → Bling authorize → <auth>/callback,
        in one browser session; return /status. replace=True confirms replacing a working authorization.
        account: the pipeline account to connect (default: DEFAULT_ACCOUNT); bling_account: the sandbox company that
        approves (default: the one named `account` when the sandbox has it, else the sandbox's default company)."""
        account = account or DEFAULT_ACCOUNT
        if bling_account is None and any(spec.name == account for spec in self.sandbox_accounts):
            bling_account = account
        return authorize_through_auth_function(self.auth_url, self.auth_admin_key, replace=replace,
                                               timeout_s=timeout_s, account=account, bling_account=bling_account)

    def auth_status(self, timeout_s: float = 10.0) -> dict[str, Any]:
        """The auth function's /status, read as the operator."""
        return auth_status(self.auth_url, self.auth_admin_key, timeout_s=timeout_s)
