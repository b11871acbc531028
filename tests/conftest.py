"""Shared fixtures: real servers (PostgreSQL, Pub/Sub and Firestore emulators, Bling sandbox, functions).

Servers are session-scoped; the *_env fixtures isolate each test (fresh tables, fresh Firestore documents, a
unique Google Cloud project id so Pub/Sub topics never collide, environment restored after every test).

A missing system tool (Java, the emulators, PostgreSQL server binaries) skips the test outside CI and fails it
under CI=true: CI must never go green by skipping.
"""
from __future__ import annotations

import contextlib
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from local import stack as local_stack  # noqa: E402
from local.stack import (  # noqa: E402
    FirestoreEmulator,
    LocalStack,
    MissingDependency,
    PostgresCluster,
    PubSubEmulator,
    load_dataset,
    new_run_dir,
    publish_json,
    pull_all,
)
from local.stack.postgres import quote_table  # noqa: E402
from shared.accounts import schema_for  # noqa: E402

IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def missing(reason: str) -> None:
    """Skip outside CI, fail loudly in CI."""
    if IN_CI:
        pytest.fail(f"CI=true and a required tool is missing: {reason}", pytrace=False)
    pytest.skip(reason)


# Process-wide caches of the project's code, each forgotten when the environment they were built from changes:
# (module, function). Looked up by name so a module that does not exist yet (or lost a hook) does not break tests.
_RESET_HOOKS = (
    ("shared.config", "reset_settings_cache"),
    ("tests.integration.process_deps", "forget_deps"),  # the test process's Deps (clients, account parts, database)
)


def _reset_shared_caches() -> None:
    import importlib

    for module_name, function in _RESET_HOOKS:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        hook = getattr(module, function, None)
        if callable(hook):
            with contextlib.suppress(Exception):
                hook()


@pytest.fixture(autouse=True)
def isolate_environment() -> Iterator[None]:
    """Snapshot os.environ before each test and restore it after (and drop cached settings/clients)."""
    saved = dict(os.environ)
    _reset_shared_caches()
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
        _reset_shared_caches()


@pytest.fixture(scope="session")
def stack_run_dir() -> Path:
    """.stack/pytest-<time>-<pid>/ for the session's servers (logs/ inside)."""
    return new_run_dir(f"pytest-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")


# ----------------------------------------------------------------------------------------------------------------
# PostgreSQL
# ----------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def postgres(stack_run_dir: Path) -> Iterator[PostgresCluster]:
    """A throwaway cluster with migrations applied. `postgres.seed_tables` = tables the migrations fill (kept)."""
    try:
        cluster = PostgresCluster(stack_run_dir / "pgdata", stack_run_dir / "logs/postgres.log")
    except MissingDependency as exc:
        missing(str(exc))
    try:
        cluster.start()
        cluster.migrate()
        # The session runs as one account, as an upgraded deployment does: public's tables adopted into its schema
        # (public is then empty, so SQL that forgets the account's schema fails instead of writing elsewhere).
        cluster.accounts_db("adopt", local_stack.DEFAULT_ACCOUNT)
        cluster.default_schema = schema_for(local_stack.DEFAULT_ACCOUNT)
        conn = cluster.connect()
        try:
            cur = conn.cursor()
            seeded = set()
            for table in cluster.tables():
                cur.execute(f"SELECT EXISTS (SELECT 1 FROM {quote_table(table)})")  # names from information_schema
                if cur.fetchone()[0]:
                    seeded.add(table.rsplit(".", 1)[-1])  # bare: kept in every account schema a test creates
        finally:
            conn.close()
        cluster.seed_tables = seeded | {"schema_migrations"}
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def db_env(postgres: PostgresCluster) -> dict[str, str]:
    """DB_* in os.environ for in-process code, shared caches reset, every table emptied before the test.

    Tables that the migrations themselves fill (schema_migrations and seeded lookup tables such as nfe_situacao)
    are kept. Returns the DB_* values."""
    env = postgres.env()
    os.environ.update(env)
    os.environ.pop("CLOUD_SQL_INSTANCE", None)
    from shared import config

    config.reset_settings_cache()
    if not postgres.is_running():  # a previous test stopped it (chaos); bring it back
        postgres.start()
    postgres.truncate_all(keep=postgres.seed_tables)
    _reset_shared_caches()  # per-process caches that mirror table contents (e.g. known payment forms)
    return env


# ----------------------------------------------------------------------------------------------------------------
# Google Cloud emulators
# ----------------------------------------------------------------------------------------------------------------

@pytest.fixture
def gcp_project() -> str:
    """A unique project id per test: Pub/Sub topics and Firestore documents of other tests are invisible."""
    return f"test-{uuid.uuid4().hex[:10]}"


def _run_emulator(emulator_class: type, log_path: Path) -> Iterator[Any]:
    """Launch one of the official emulators for the session (missing one: skip, or fail under CI), stop it after."""
    try:
        emulator = emulator_class(log_path)
        emulator.launch()
    except MissingDependency as exc:
        missing(str(exc))
    try:
        emulator.wait_ready()
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture(scope="session")
def firestore_emulator(stack_run_dir: Path) -> Iterator[FirestoreEmulator]:
    yield from _run_emulator(FirestoreEmulator, stack_run_dir / "logs/firestore-emulator.log")


@pytest.fixture
def firestore_env(firestore_emulator: FirestoreEmulator, gcp_project: str) -> FirestoreEmulator:
    """FIRESTORE_EMULATOR_HOST + GOOGLE_CLOUD_PROJECT set, the project's documents deleted, client reset."""
    os.environ["FIRESTORE_EMULATOR_HOST"] = firestore_emulator.host
    os.environ["GOOGLE_CLOUD_PROJECT"] = gcp_project
    firestore_emulator.reset(gcp_project)
    _reset_shared_caches()  # the Firestore client, and everything cached from Firestore (token store, budget)
    return firestore_emulator


@pytest.fixture(scope="session")
def pubsub_emulator(stack_run_dir: Path) -> Iterator[PubSubEmulator]:
    yield from _run_emulator(PubSubEmulator, stack_run_dir / "logs/pubsub-emulator.log")


@pytest.fixture
def pubsub_env(pubsub_emulator: PubSubEmulator, gcp_project: str) -> PubSubEmulator:
    """PUBSUB_EMULATOR_HOST + GOOGLE_CLOUD_PROJECT (unique per test) set, publisher client reset."""
    os.environ["PUBSUB_EMULATOR_HOST"] = pubsub_emulator.host
    os.environ["GOOGLE_CLOUD_PROJECT"] = gcp_project
    _reset_shared_caches()
    return pubsub_emulator


class PubSubCapture:
    """Topics with a PULL subscription `<topic>-capture` each, to see what in-process code publishes."""

    def __init__(self, emulator: PubSubEmulator, project: str):
        self.emulator = emulator
        self.project = project
        self.topics: set[str] = set()

    def add_topic(self, topic: str) -> None:
        from google.api_core import exceptions

        publisher, subscriber = self.emulator.publisher(), self.emulator.subscriber()
        with contextlib.suppress(exceptions.AlreadyExists):
            publisher.create_topic(request={"name": publisher.topic_path(self.project, topic)})
        with contextlib.suppress(exceptions.AlreadyExists):
            subscriber.create_subscription(request={
                "name": subscriber.subscription_path(self.project, f"{topic}-capture"),
                "topic": publisher.topic_path(self.project, topic), "ack_deadline_seconds": 60})
        self.topics.add(topic)

    def publish(self, topic: str, payload: Any, **attributes: str) -> str:
        return publish_json(self.emulator, topic, payload, project=self.project, **attributes)

    def pull(self, topic: str, timeout_s: float = 3.0, max_messages: int = 1000) -> list[dict]:
        """Messages published to topic since the last pull: [{data (parsed JSON), attributes, id, ...}] (acked)."""
        return pull_all(self.emulator, f"{topic}-capture", project=self.project, timeout_s=timeout_s,
                        max_messages=max_messages)

    def pull_data(self, topic: str, timeout_s: float = 3.0) -> list[Any]:
        return [m["data"] for m in self.pull(topic, timeout_s=timeout_s)]

    def pull_topics(self, topics: Iterable[str], timeout_s: float = 0.5) -> list[tuple[str, dict]]:
        """[(topic, message)] of what the topics hold, waiting up to timeout_s for the first message on ANY of them:
        one wait for all, where pull() per topic waits its whole timeout on each topic that stays empty (what a
        test that expects nothing on several topics would pay once per topic)."""
        topics = list(topics)
        deadline = time.monotonic() + timeout_s
        while True:
            found = [(topic, m) for topic in topics for m in self.pull(topic, timeout_s=0)]
            if found or time.monotonic() >= deadline:
                return found
            time.sleep(0.05)


@pytest.fixture
def pubsub_topology(pubsub_env: PubSubEmulator, gcp_project: str) -> PubSubCapture:
    """Every topic of shared.topology (and its dead-letter topic), each with a `<topic>-capture` pull subscription.

    Usage: handler(event); assert pubsub_topology.pull_data("bling-nfe") == [...]. add_topic() for others."""
    from shared import topology

    capture = PubSubCapture(pubsub_env, gcp_project)
    for route in topology.ROUTES:
        capture.add_topic(route.topic)
        capture.add_topic(route.dead_letter_topic)
    return capture


# ----------------------------------------------------------------------------------------------------------------
# Bling sandbox
# ----------------------------------------------------------------------------------------------------------------

@pytest.fixture
def sandbox() -> Iterator[Callable[..., Any]]:
    """Factory: sandbox(profile="small", seed=42, client_id=..., client_secret=..., redirect_uri=...,
    rate_per_s=3.0, latency_s=0.0) -> a started in-process SandboxServer (stopped after the test), with
    BLING_API_BASE/TOKEN_URL/AUTHORIZE_URL/CLIENT_ID/CLIENT_SECRET set in os.environ and settings reset."""
    from local.sandbox.server import SandboxServer

    started: list[Any] = []

    def factory(profile: str = "small", *, seed: int = 42, client_id: str = "test-client",
                client_secret: str = "test-client-secret-0123456789",
                redirect_uri: str = "http://127.0.0.1:9/callback", rate_per_s: float = 3.0,
                latency_s: float = 0.0, dataset: Any = None, **kwargs: Any) -> Any:
        if dataset is None and not kwargs.get("accounts"):  # accounts=[SandboxAccount(...)]: several companies
            dataset = load_dataset(profile, seed)
        server = SandboxServer(dataset,
                               client_id=client_id, client_secret=client_secret, redirect_uri=redirect_uri,
                               rate_per_s=rate_per_s, latency_s=latency_s, **kwargs)
        server.start()
        started.append(server)
        api = server.api_base.rstrip("/")
        from shared.bling import token_crypto

        # A random key for the token fields per sandbox, as the local stack makes one per stack (ADR 008).
        os.environ.update({"BLING_API_BASE": api, "BLING_TOKEN_URL": api + "/oauth/token",
                           "BLING_AUTHORIZE_URL": api + "/oauth/authorize", "BLING_CLIENT_ID": client_id,
                           "BLING_CLIENT_SECRET": client_secret,
                           "BLING_TOKEN_KEY": token_crypto.new_key()})
        _reset_shared_caches()  # settings, the Bling client, its token store and session
        return server

    try:
        yield factory
    finally:
        for server in started:
            with contextlib.suppress(Exception):
                server.stop()


# ----------------------------------------------------------------------------------------------------------------
# The whole stack
# ----------------------------------------------------------------------------------------------------------------

def _start_stack(**kwargs: Any) -> LocalStack:
    kwargs.setdefault("handle_signals", False)
    try:
        for check in (local_stack.postgres_bin_dir, local_stack.check_pubsub_emulator,
                      local_stack.check_firestore_emulator):
            check()
    except MissingDependency as exc:
        missing(str(exc))
    return LocalStack(**kwargs).start()


@pytest.fixture(scope="module")
def stack(request: pytest.FixtureRequest) -> Iterator[LocalStack]:
    """The full pipeline: every function as a functions-framework process, the `small` sandbox profile (a
    subprocess), push subscriptions retrying a failed push after 1 s. One per test module. Not authorized yet: call
    stack.authorize(). Use stack.env() for in-process clients. A module that sets SANDBOX_ACCOUNTS (a list of
    local.stack.sandbox.AccountSpec) gets a sandbox serving those companies instead of one."""
    started = _start_stack(profile="small", sandbox_accounts=getattr(request.module, "SANDBOX_ACCOUNTS", None))
    try:
        yield started
    finally:
        started.stop()


def _stack_factory() -> Iterator[Callable[..., LocalStack]]:
    stacks: list[LocalStack] = []

    def factory(**kwargs: Any) -> LocalStack:
        started = _start_stack(**kwargs)
        stacks.append(started)
        return started

    try:
        yield factory
    finally:
        for started in stacks:
            started.stop()


@pytest.fixture
def local_stack_factory() -> Iterator[Callable[..., LocalStack]]:
    """Factory for tests that need their own configuration: local_stack_factory(**LocalStack kwargs) -> started
    stack, stopped after the test."""
    yield from _stack_factory()


@pytest.fixture(scope="module")
def module_stack_factory() -> Iterator[Callable[..., LocalStack]]:
    """local_stack_factory for a stack several tests of a module share (starting one costs seconds): stopped after
    the module's last test, unless a test stopped it before."""
    yield from _stack_factory()
