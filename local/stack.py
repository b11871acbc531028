"""The local stack: the whole pipeline on this machine, with real servers only.

    with LocalStack(profile="small") as stack:
        stack.authorize()                                   # the first OAuth consent, through the auth function
                                                            # (as the operator: with this stack's admin key)
        stack.publish("bling-schedule", {"month": "2026-01"})
        stack.wait_for_quiet(quiet_s=8, timeout_s=300)

Components (each usable on its own, e.g. by the test fixtures):
  PostgresCluster    throwaway initdb/pg_ctl cluster on a free port, migrations applied with `python -m shared.migrate`
  PubSubEmulator     Google's Pub/Sub emulator (the launcher script execs java, so our PID is the JVM)
  FirestoreEmulator  Google's Firestore emulator, run as `java -cp ... CloudFirestore start` (the wrapper orphans it)
  Sandbox            the fake Bling API v3 (local.sandbox), as a subprocess or in-process
  FunctionServer     one `functions-framework` process per function in shared.topology.ALL_FUNCTIONS
and create_topology() creates the topics, push subscriptions, dead-letter topics and hold subscriptions exactly
as shared.topology declares them.

Every process is stopped by its PID on exit, on exceptions, on Ctrl-C and on SIGTERM; ports are picked free at
start. Run directories live in .stack/<run>/ (logs/<name>.log for every process, pgdata/ for the cluster).
"""
from __future__ import annotations

import atexit
import contextlib
import datetime
import glob
import json
import os
import pwd
import secrets
import shutil
import signal
import stat
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from local.processes import (
    ManagedProcess,
    free_port,
    http_ok,
    pid_alive,
    port_is_free,
    port_is_open,
    run,
    wait_until,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
STACK_DIR = REPO_ROOT / ".stack"
GCLOUD_SDK_ROOT = Path(os.environ.get("GCLOUD_SDK_ROOT", "/usr/lib/google-cloud-sdk"))
PUBSUB_EMULATOR = GCLOUD_SDK_ROOT / "platform/pubsub-emulator/bin/cloud-pubsub-emulator"
FIRESTORE_JAR = GCLOUD_SDK_ROOT / "platform/cloud-firestore-emulator/cloud-firestore-emulator.jar"
DEFAULT_PROJECT = "demo-local"
HOST = "127.0.0.1"


class MissingDependency(RuntimeError):
    """A system tool the stack needs is absent (tests skip on it outside CI and fail under CI=true)."""


# --------------------------------------------------------------------------------------------------------------
# Binaries
# --------------------------------------------------------------------------------------------------------------

def postgres_bin_dir() -> Path:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                        key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0)
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    raise MissingDependency("PostgreSQL server binaries (initdb, pg_ctl) not found: run `make setup` "
                            "(apt-get install -y postgresql)")


def java_bin() -> str:
    found = shutil.which("java")
    if not found:
        raise MissingDependency("java not found (needed by the Pub/Sub and Firestore emulators): "
                                "apt-get install -y openjdk-17-jre-headless")
    return found


def check_pubsub_emulator() -> Path:
    java_bin()
    if not PUBSUB_EMULATOR.exists():
        raise MissingDependency(f"Pub/Sub emulator not found at {PUBSUB_EMULATOR}: "
                                "`gcloud components install pubsub-emulator` (or Google's apt package "
                                "google-cloud-cli-pubsub-emulator)")
    return PUBSUB_EMULATOR


def check_firestore_emulator() -> Path:
    java_bin()
    if not FIRESTORE_JAR.exists():
        raise MissingDependency(f"Firestore emulator not found at {FIRESTORE_JAR}: "
                                "`gcloud components install cloud-firestore-emulator` (or Google's apt package "
                                "google-cloud-cli-firestore-emulator)")
    return FIRESTORE_JAR


def venv_bin(name: str) -> str:
    """A console script next to the running interpreter (the project's .venv), else the repo's .venv, else PATH."""
    for candidate in (Path(sys.executable).parent / name, REPO_ROOT / ".venv/bin" / name):
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if not found:
        raise MissingDependency(f"{name} not found: run `make setup`")
    return found


def new_run_dir(run: str | None = None, base: Path = STACK_DIR, fresh: bool = True) -> Path:
    """.stack/<run>/ with logs/; a generated run name is unique (time, pid, counter)."""
    if run is None:
        run = f"{datetime.datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    path = base / run
    if fresh and path.exists():
        shutil.rmtree(path)
    (path / "logs").mkdir(parents=True, exist_ok=True)
    return path


# --------------------------------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------------------------------

class PostgresCluster:
    """A throwaway PostgreSQL cluster: initdb in data_dir, pg_ctl start on a free port of 127.0.0.1.

    TCP logins use scram-sha-256 with a generated password for `user`; the unix socket lives in a private temp dir
    and trusts local connections (used only to create the role and the database). As root, every PostgreSQL
    binary runs as the `postgres` OS user (initdb and postgres refuse to run as root).
    """

    def __init__(self, data_dir: Path, log_path: Path, port: int | None = None, user: str = "bling_etl",
                 database: str = "bling", password: str | None = None):
        self.data_dir = Path(data_dir)
        self.log_path = Path(log_path)
        self.port = port or free_port()
        self.user = user
        self.database = database
        self.password = password or secrets.token_urlsafe(18)
        self.bin_dir = postgres_bin_dir()
        self.socket_dir: Path | None = None
        self._pids: set[int] = set()
        self._as_postgres = os.geteuid() == 0
        self._started = False

    # -- OS user handling
    def _cmd(self, *argv: str) -> list[str]:
        return (["runuser", "-u", "postgres", "--"] if self._as_postgres else []) + list(argv)

    def _chown(self, path: Path) -> None:
        if self._as_postgres:
            pw = pwd.getpwnam("postgres")
            os.chown(path, pw.pw_uid, pw.pw_gid)

    def _make_parents_traversable(self) -> None:
        if not self._as_postgres:
            return
        for parent in self.data_dir.parents:
            mode = parent.stat().st_mode
            if not mode & stat.S_IXOTH:
                os.chmod(parent, mode | stat.S_IXOTH)

    @property
    def initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def init(self) -> None:
        if self.initialized:
            return
        if self._as_postgres:
            try:
                pwd.getpwnam("postgres")
            except KeyError as exc:
                raise MissingDependency("running as root but there is no `postgres` OS user "
                                        "(apt-get install -y postgresql creates it)") from exc
        self.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.data_dir, 0o700)
        self._chown(self.data_dir)
        self._make_parents_traversable()
        run(self._cmd(str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", "postgres", "-E", "UTF8",
                      "--no-locale", "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync"),
            what="initdb", cwd="/tmp")

    def start(self) -> PostgresCluster:
        self.init()
        if self.socket_dir is None or not self.socket_dir.exists():
            self.socket_dir = Path(tempfile.mkdtemp(prefix="bling-pg-"))
            os.chmod(self.socket_dir, 0o755)
            self._chown(self.socket_dir)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.touch()
        self._chown(self.log_path)
        options = (f"-p {self.port} -k {self.socket_dir} -c listen_addresses={HOST} -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        run(self._cmd(str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_path), "-w",
                      "-t", "60", "-o", options, "start"), what="pg_ctl start", cwd="/tmp")
        self._started = True
        pid = self.pid
        if pid:
            self._pids.add(pid)
        self._ensure_role_and_database()
        return self

    def _ensure_role_and_database(self) -> None:
        import pg8000.dbapi

        conn = pg8000.dbapi.connect(user="postgres", database="postgres",
                                    unix_sock=str(self.socket_dir / f".s.PGSQL.{self.port}"))
        try:
            conn.autocommit = True
            cur = conn.cursor()
            cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (self.user,))
            quoted_password = self.password.replace("'", "''")
            if cur.fetchone():
                cur.execute(f'ALTER ROLE "{self.user}" LOGIN PASSWORD \'{quoted_password}\'')
            else:
                cur.execute(f'CREATE ROLE "{self.user}" LOGIN PASSWORD \'{quoted_password}\'')
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,))
            if not cur.fetchone():
                cur.execute(f'CREATE DATABASE "{self.database}" OWNER "{self.user}"')
        finally:
            conn.close()

    @property
    def pid(self) -> int | None:
        try:
            return int((self.data_dir / "postmaster.pid").read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None

    def is_running(self) -> bool:
        pid = self.pid
        return bool(pid and pid_alive(pid))

    def stop(self, mode: str = "fast") -> None:
        """pg_ctl stop (mode fast|immediate|smart); falls back to killing the postmaster by PID."""
        if not self._started:
            return
        pid = self.pid
        if pid and pid_alive(pid):
            try:
                run(self._cmd(str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "-t", "30",
                              "stop"), what="pg_ctl stop", cwd="/tmp")
            except Exception:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 15
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
        self._started = False

    def restart(self, mode: str = "fast") -> None:
        """Stop and start the same cluster on the same port (a database restart seen by running functions)."""
        self.stop(mode=mode)
        self.start()

    def destroy(self) -> None:
        """Stop and delete the data directory and the socket directory."""
        self.stop(mode="immediate")  # the data is deleted next: no shutdown checkpoint to wait for
        shutil.rmtree(self.data_dir, ignore_errors=True)
        if self.socket_dir:
            shutil.rmtree(self.socket_dir, ignore_errors=True)

    def pids(self) -> set[int]:
        return set(self._pids)

    def env(self) -> dict[str, str]:
        return {"DB_HOST": HOST, "DB_PORT": str(self.port), "DB_NAME": self.database, "DB_USER": self.user,
                "DB_PASSWORD": self.password}

    def migrate(self, python: str | None = None) -> str:
        """Apply migrations/ with `python -m shared.migrate` (the same runner deployment uses)."""
        env = {**os.environ, **self.env(), "PYTHONPATH": str(REPO_ROOT)}
        env.pop("CLOUD_SQL_INSTANCE", None)
        return run([python or sys.executable, "-m", "shared.migrate"], env=env, cwd=REPO_ROOT,
                   what="python -m shared.migrate")

    def connect(self):
        """A new pg8000 connection as the application user over TCP."""
        import pg8000.dbapi

        return pg8000.dbapi.connect(host=HOST, port=self.port, database=self.database, user=self.user,
                                    password=self.password, timeout=30)

    def tables(self) -> list[str]:
        conn = self.connect()
        try:
            cur = conn.cursor()
            cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' "
                        "AND table_type = 'BASE TABLE' ORDER BY table_name")
            return [r[0] for r in cur.fetchall()]
        finally:
            conn.close()

    def truncate_all(self, keep: Iterable[str] = ("schema_migrations",)) -> None:
        conn = self.connect()
        try:
            cur = conn.cursor()
            cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' "
                        "AND table_type = 'BASE TABLE'")
            names = [r[0] for r in cur.fetchall() if r[0] not in set(keep)]
            if names:
                cur.execute("TRUNCATE " + ", ".join(f'"{n}"' for n in names) + " RESTART IDENTITY CASCADE")
            conn.commit()
        finally:
            conn.close()


# --------------------------------------------------------------------------------------------------------------
# Emulators
# --------------------------------------------------------------------------------------------------------------

class PubSubEmulator:
    def __init__(self, log_path: Path, project: str = DEFAULT_PROJECT, port: int | None = None):
        self.project = project
        self.port = port or free_port()
        self.log_path = Path(log_path)
        self.process: ManagedProcess | None = None

    @property
    def host(self) -> str:
        return f"{HOST}:{self.port}"

    def launch(self) -> PubSubEmulator:
        script = check_pubsub_emulator()
        self.process = ManagedProcess("pubsub-emulator", [str(script), f"--host={HOST}", f"--port={self.port}"],
                                      self.log_path, env={**os.environ}).start()
        return self

    def wait_ready(self, timeout_s: float = 60) -> None:
        wait_until(lambda: http_ok(f"http://{self.host}/"), timeout_s, f"Pub/Sub emulator on {self.host}",
                   alive=self.process.exit_problem)

    def start(self) -> PubSubEmulator:
        self.launch()
        self.wait_ready()
        return self

    def stop(self) -> None:
        if self.process:
            self.process.stop()

    def pids(self) -> set[int]:
        return {self.process.pid} if self.process and self.process.pid else set()

    def env(self) -> dict[str, str]:
        return {"PUBSUB_EMULATOR_HOST": self.host}

    def publisher(self):
        with emulator_env(PUBSUB_EMULATOR_HOST=self.host):
            from google.cloud import pubsub_v1

            return pubsub_v1.PublisherClient()

    def subscriber(self):
        with emulator_env(PUBSUB_EMULATOR_HOST=self.host):
            from google.cloud import pubsub_v1

            return pubsub_v1.SubscriberClient()


class FirestoreEmulator:
    def __init__(self, log_path: Path, project: str = DEFAULT_PROJECT, port: int | None = None):
        self.project = project
        self.port = port or free_port()
        self.log_path = Path(log_path)
        self.process: ManagedProcess | None = None

    @property
    def host(self) -> str:
        return f"{HOST}:{self.port}"

    def launch(self) -> FirestoreEmulator:
        jar = check_firestore_emulator()
        argv = [java_bin(), "-cp", str(jar), "com.google.cloud.datastore.emulator.firestore.CloudFirestore",
                "start", f"--host={HOST}", f"--port={self.port}", f"--project_id={self.project}"]
        self.process = ManagedProcess("firestore-emulator", argv, self.log_path, env={**os.environ}).start()
        return self

    def wait_ready(self, timeout_s: float = 60) -> None:
        wait_until(lambda: http_ok(f"http://{self.host}/"), timeout_s, f"Firestore emulator on {self.host}",
                   alive=self.process.exit_problem)

    def start(self) -> FirestoreEmulator:
        self.launch()
        self.wait_ready()
        return self

    def reset(self, project: str | None = None) -> None:
        """Delete every document of the project (the emulator's own reset endpoint)."""
        url = (f"http://{self.host}/emulator/v1/projects/{project or self.project}"
               "/databases/(default)/documents")
        request = urllib.request.Request(url, method="DELETE")
        with urllib.request.urlopen(request, timeout=30) as response:
            if response.status != 200:
                raise RuntimeError(f"Firestore reset answered {response.status}")

    def stop(self) -> None:
        if self.process:
            self.process.stop()

    def pids(self) -> set[int]:
        return {self.process.pid} if self.process and self.process.pid else set()

    def env(self) -> dict[str, str]:
        return {"FIRESTORE_EMULATOR_HOST": self.host}

    def client(self, project: str | None = None):
        with emulator_env(FIRESTORE_EMULATOR_HOST=self.host):
            from google.cloud import firestore

            return firestore.Client(project=project or self.project)


_env_lock = threading.Lock()


@contextlib.contextmanager
def emulator_env(**values: str) -> Iterator[None]:
    """Set emulator variables only while a client is constructed (the clients read them at construction)."""
    with _env_lock:
        saved = {k: os.environ.get(k) for k in values}
        os.environ.update(values)
        try:
            yield
        finally:
            for key, old in saved.items():
                if old is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = old


# --------------------------------------------------------------------------------------------------------------
# Bling sandbox
# --------------------------------------------------------------------------------------------------------------

def load_dataset(profile: str, seed: int = 42):
    """The sandbox dataset for a named profile (demo, small, history), whatever the dataset module calls it."""
    from local.sandbox import dataset as ds

    for name in ("build_profile", "profile", "make_dataset", "build_dataset", "generate", "for_profile",
                 "load_profile", "dataset_for_profile"):
        fn = getattr(ds, name, None)
        if callable(fn):
            for call in (lambda: fn(profile, seed=seed), lambda: fn(profile, seed), lambda: fn(profile)):
                try:
                    return call()
                except TypeError:
                    continue
    named = getattr(ds, profile, None) or getattr(ds, f"{profile}_dataset", None) or getattr(ds, f"{profile}_profile",
                                                                                               None)
    if callable(named):
        try:
            return named(seed=seed)
        except TypeError:
            return named()
    raise RuntimeError(f"local.sandbox.dataset has no recognised builder for profile {profile!r}")


class Sandbox:
    """The fake Bling API v3: `python -m local.sandbox` as a subprocess (default) or SandboxServer in-process."""

    def __init__(self, run_dir: Path, profile: str = "small", seed: int = 42, rate_per_s: float = 3.0,
                 latency_s: float = 0.0, redirect_uri: str = "", client_id: str | None = None,
                 client_secret: str | None = None, in_process: bool = False, extra_args: Iterable[str] = ()):
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
        self.process: ManagedProcess | None = None
        self.server = None
        self.url = ""

    @property
    def api_base(self) -> str:
        return self.url + "/Api/v3"

    def launch(self) -> Sandbox:
        if self.in_process:
            from local.sandbox.server import SandboxServer

            self.server = SandboxServer(load_dataset(self.profile, self.seed), client_id=self.client_id,
                                        client_secret=self.client_secret, redirect_uri=self.redirect_uri,
                                        rate_per_s=self.rate_per_s, latency_s=self.latency_s)
            self.server.start()
            self.url = self.server.url.rstrip("/")
            return self
        port_file = self.run_dir / "sandbox.port"
        port_file.unlink(missing_ok=True)
        argv = [sys.executable, "-m", "local.sandbox", "--profile", self.profile, "--seed", str(self.seed),
                "--rate", str(self.rate_per_s), "--latency-ms", str(int(self.latency_s * 1000)), "--port", "0",
                "--port-file", str(port_file), f"--redirect-uri={self.redirect_uri}",
                # `--opt=value`: a generated secret may start with "-" (token_urlsafe), which argparse would
                # otherwise read as an option (one bench run in 64 failed so)
                f"--client-id={self.client_id}", f"--client-secret={self.client_secret}", *self.extra_args]
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"}
        self.process = ManagedProcess("sandbox", argv, self.run_dir / "logs/sandbox.log", env=env,
                                      cwd=REPO_ROOT).start()
        self._port_file = port_file
        return self

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

        wait_until(ready, timeout_s, "Bling sandbox", alive=self.process.exit_problem)

    def start(self) -> Sandbox:
        self.launch()
        self.wait_ready()
        return self

    def stop(self) -> None:
        if self.server is not None:
            with contextlib.suppress(Exception):
                self.server.stop()
        if self.process:
            self.process.stop()

    def pids(self) -> set[int]:
        return {self.process.pid} if self.process and self.process.pid else set()

    def env(self) -> dict[str, str]:
        return {"BLING_API_BASE": self.api_base, "BLING_TOKEN_URL": self.api_base + "/oauth/token",
                "BLING_AUTHORIZE_URL": self.api_base + "/oauth/authorize", "BLING_CLIENT_ID": self.client_id,
                "BLING_CLIENT_SECRET": self.client_secret}

    # -- admin API
    def admin(self, path: str, body: dict | None = None, method: str | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + "/__admin/" + path.lstrip("/"), data=data,
                                         method=method or ("POST" if body is not None else "GET"),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            raw = response.read()
        return json.loads(raw) if raw.strip() else None

    def truth(self) -> dict:
        return self.admin("truth")

    def stats(self) -> dict:
        return self.admin("stats")

    def reset_stats(self) -> None:
        self.admin("reset_stats", {})

    def faults(self, spec: dict) -> Any:
        return self.admin("faults", spec)


# --------------------------------------------------------------------------------------------------------------
# Functions
# --------------------------------------------------------------------------------------------------------------

class FunctionServer:
    """`functions-framework --target <entry> --source <file> --signature-type <type>` on a free port."""

    def __init__(self, name: str, entry_point: str, signature_type: str, log_path: Path,
                 source: Path | None = None, port: int | None = None, env: Mapping[str, str] | None = None):
        self.name = name
        self.entry_point = entry_point
        self.signature_type = signature_type
        self.source = Path(source) if source else REPO_ROOT / "functions" / name / "main.py"
        self.port = port or free_port()
        self.log_path = Path(log_path)
        self.extra_env = dict(env or {})
        self.process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def launch(self) -> FunctionServer:
        if not self.source.exists():
            raise FileNotFoundError(f"function source {self.source} does not exist")
        argv = [venv_bin("functions-framework"), "--target", self.entry_point, "--source", str(self.source),
                "--signature-type", self.signature_type, "--host", HOST, "--port", str(self.port)]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.extra_env}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), self.extra_env.get("PYTHONPATH", "")) if p)
        self.process = ManagedProcess(f"fn-{self.name}", argv, self.log_path, env=env, cwd=REPO_ROOT).start()
        return self

    def wait_ready(self, timeout_s: float = 60) -> None:
        """Ready = it answers HTTP (any status), twice in a row: an open port alone was seen to refuse the next
        request right after a restart, while the server was still coming up."""
        answers = []

        def answers_http() -> bool:
            with urllib.request.urlopen(self.url + "/__ready", timeout=2) as _:
                pass
            return True

        def ready() -> bool:
            try:
                answers.append(answers_http())
            except urllib.error.HTTPError:
                answers.append(True)  # a 4xx/5xx is an answer: the server is up
            except OSError:
                answers.clear()
                return False
            return len(answers) >= 2

        wait_until(ready, timeout_s, f"function {self.name} on port {self.port}", alive=self.process.exit_problem)

    def start(self) -> FunctionServer:
        self.launch()
        self.wait_ready()
        return self

    def stop(self) -> None:
        if self.process:
            self.process.stop()

    def pids(self) -> set[int]:
        return {self.process.pid} if self.process and self.process.pid else set()


# --------------------------------------------------------------------------------------------------------------
# Topology
# --------------------------------------------------------------------------------------------------------------

def create_topology(emulator: PubSubEmulator, endpoints: Mapping[str, str], project: str | None = None,
                    routes: Iterable[Any] | None = None, ack_deadline_s: int | None = None) -> None:
    """Create what shared.topology declares: per route the topic, its dead-letter topic, the push subscription to
    `<endpoint>/projects/<P>/topics/<topic>` (so the CloudEvent source is right) with its dead-letter policy, and
    the `-dead-letter-hold` pull subscription. endpoints maps function name -> base URL. The ack deadline defaults
    to the route's value.

    No retry policy, unlike production (infra/pubsub.tf): the emulator (0.8.20) loses messages under one. With
    min/max backoff set, a message whose push failed twice is neither redelivered nor dead-lettered (measured:
    14 of 60 messages lost at a 50 % push failure rate, 0 of 60 without the policy; docs/decisions/005).
    Without it the emulator retries a failed push after 1 s, and still counts attempts for the dead-letter
    policy."""
    from google.api_core import exceptions

    from shared import topology

    project = project or emulator.project
    publisher, subscriber = emulator.publisher(), emulator.subscriber()
    for route in routes if routes is not None else topology.ROUTES:
        topic_path = publisher.topic_path(project, route.topic)
        dlq_path = publisher.topic_path(project, route.dead_letter_topic)
        for path in (topic_path, dlq_path):
            with contextlib.suppress(exceptions.AlreadyExists):
                publisher.create_topic(request={"name": path})
        with contextlib.suppress(exceptions.AlreadyExists):
            subscriber.create_subscription(request={
                "name": subscriber.subscription_path(project, route.dead_letter_subscription),
                "topic": dlq_path, "ack_deadline_seconds": 60})
        if route.function not in endpoints:
            continue
        push = f"{endpoints[route.function].rstrip('/')}/projects/{project}/topics/{route.topic}"
        with contextlib.suppress(exceptions.AlreadyExists):
            subscriber.create_subscription(request={
                "name": subscriber.subscription_path(project, route.subscription),
                "topic": topic_path,
                "push_config": {"push_endpoint": push},
                "ack_deadline_seconds": ack_deadline_s or route.ack_deadline_s,
                "dead_letter_policy": {"dead_letter_topic": dlq_path,
                                       "max_delivery_attempts": route.max_delivery_attempts},
            })


def publish_json(emulator: PubSubEmulator, topic: str, payload: dict | list | Any, project: str | None = None,
                 **attributes: str) -> str:
    publisher = emulator.publisher()
    data = json.dumps(payload, separators=(",", ":"), default=str).encode()
    return publisher.publish(publisher.topic_path(project or emulator.project, topic), data,
                             **attributes).result(timeout=30)


def pull_all(emulator: PubSubEmulator, subscription: str, project: str | None = None, max_messages: int = 100,
             timeout_s: float = 5.0, ack: bool = True) -> list[dict]:
    """Pull (and ack) what the subscription holds: [{data (decoded JSON or bytes), attributes, id, ...}].

    Waits up to timeout_s for the first message, then drains what is already there and returns."""
    subscriber = emulator.subscriber()
    path = subscriber.subscription_path(project or emulator.project, subscription)
    out: list[dict] = []
    deadline = time.monotonic() + timeout_s
    while True:
        # return_immediately (deprecated for production, honoured by the emulator) keeps an empty pull at ~5 ms
        # instead of a blocking RPC, so a test that expects nothing does not wait a whole timeout per call.
        response = subscriber.pull(request={"subscription": path, "max_messages": max_messages,
                                            "return_immediately": True}, timeout=30)
        for received in response.received_messages:
            raw = received.message.data
            try:
                data: Any = json.loads(raw)
            except ValueError:
                data = raw
            out.append({"data": data, "attributes": dict(received.message.attributes),
                        "id": received.message.message_id, "delivery_attempt": received.delivery_attempt})
        if response.received_messages:
            if ack:
                subscriber.acknowledge(request={"subscription": path,
                                                "ack_ids": [r.ack_id for r in response.received_messages]})
            continue
        if out or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    return out


# --------------------------------------------------------------------------------------------------------------
# The whole stack
# --------------------------------------------------------------------------------------------------------------

_live_stacks: set[LocalStack] = set()
_live_lock = threading.Lock()


def _stop_live_stacks() -> None:
    with _live_lock:
        stacks = list(_live_stacks)
    for stack in stacks:
        with contextlib.suppress(Exception):
            stack.stop()


atexit.register(_stop_live_stacks)


def _quietly(action: Callable[[], None]) -> None:
    """Run a stop step; a failure must not keep the other components running."""
    with contextlib.suppress(Exception):
        action()


class LocalStack:
    """PostgreSQL + Pub/Sub + Firestore emulators + Bling sandbox + every function, wired like production.

    Parameters
      run            name of the run directory under .stack/ (generated when None; "demo" for make demo)
      profile, seed, rate_per_s, latency_s, sandbox_in_process: the Bling sandbox
      functions      names from shared.topology.ALL_FUNCTIONS to start (default: all); extra_functions adds
                     {name: (entry_point, signature_type, source_path)} e.g. test doubles
      ack_deadline_s push ack deadline (the route's when None); failed pushes are retried after 1 s (see
                     create_topology for why there is no retry policy locally)
      function_env   extra environment for every function (e.g. BLING_RATE_BUDGET_PER_S, THREADS)
      keep_pgdata    leave the stopped cluster's data directory in .stack/<run>/pgdata (make demo does)
      project        the Google Cloud project id used with the emulators
    """

    def __init__(self, run: str | None = None, *, profile: str = "small", seed: int = 42, rate_per_s: float = 3.0,
                 latency_s: float = 0.0, sandbox_in_process: bool = False, sandbox: bool = True,
                 functions: Iterable[str] | None = None,
                 extra_functions: Mapping[str, tuple[str, str, str | Path]] | None = None,
                 ack_deadline_s: int | None = None, function_env: Mapping[str, str] | None = None,
                 keep_pgdata: bool = False, project: str = DEFAULT_PROJECT, handle_signals: bool = True):
        from shared import topology

        self.run_name = run
        self.profile, self.seed, self.rate_per_s, self.latency_s = profile, seed, rate_per_s, latency_s
        self.sandbox_in_process = sandbox_in_process
        self.with_sandbox = sandbox
        self.function_names = list(functions) if functions is not None else list(topology.ALL_FUNCTIONS)
        self.extra_functions = dict(extra_functions or {})
        self.ack_deadline_s = ack_deadline_s
        self.function_env = dict(function_env or {})
        # The key of the stored Bling tokens (ADR 008): random per stack, as Secret Manager holds one per project.
        from shared.bling import token_crypto

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
    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self) -> LocalStack:
        from shared import topology

        self._stopped = False
        self._started_at = time.monotonic()
        with _live_lock:
            _live_stacks.add(self)
        self._install_signal_handlers()
        try:
            self.run_dir = new_run_dir(self.run_name)
            logs = self.run_dir / "logs"
            # Ports first: the sandbox must know the auth function's callback URL, the functions the sandbox's URL.
            specs: dict[str, tuple[str, str, Path]] = {}
            for name in self.function_names:
                entry = topology.ALL_FUNCTIONS[name]
                kind = "http" if name in topology.HTTP_FUNCTIONS else "cloudevent"
                specs[name] = (entry, kind, REPO_ROOT / "functions" / name / "main.py")
            for name, (entry, kind, source) in self.extra_functions.items():
                specs[name] = (entry, kind, Path(source))
            self.functions = {name: FunctionServer(name, entry, kind, logs / f"{name}.log", source=source)
                              for name, (entry, kind, source) in specs.items()}

            self.postgres = PostgresCluster(self.run_dir / "pgdata", logs / "postgres.log")
            self.pubsub = PubSubEmulator(logs / "pubsub-emulator.log", self.project).launch()
            self.firestore = FirestoreEmulator(logs / "firestore-emulator.log", self.project).launch()
            self._track()
            self.postgres.start()
            self._track()
            if self.with_sandbox:
                self.sandbox = Sandbox(self.run_dir, profile=self.profile, seed=self.seed,
                                       rate_per_s=self.rate_per_s, latency_s=self.latency_s,
                                       redirect_uri=self.auth_url + "/callback" if self.auth_url else "",
                                       in_process=self.sandbox_in_process).launch()
                self._track()
            self.postgres.migrate()
            self.pubsub.wait_ready()
            self.firestore.wait_ready()
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
        except BaseException:
            self.stop()
            raise
        return self

    def _write_admin_key(self) -> None:
        """.stack/<run>/auth-admin-key (mode 600), so a human can open <auth>/start of a running stack by hand."""
        path = self.run_dir / "auth-admin-key"
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

    def components(self) -> list[Any]:
        return [c for c in (self.postgres, self.pubsub, self.firestore, self.sandbox, *self.functions.values())
                if c is not None]

    def create_topology(self) -> None:
        create_topology(self.pubsub, {name: fn.url for name, fn in self.functions.items()}, project=self.project,
                        ack_deadline_s=self.ack_deadline_s)

    def stop(self) -> None:
        """Stop every process (all components at once; PostgreSQL destroyed unless keep_pgdata). Safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
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
        with _live_lock:
            _live_stacks.discard(self)

    def _stop_postgres(self) -> None:
        if self.keep_pgdata:
            self.postgres.stop()
            if self.postgres.socket_dir:
                shutil.rmtree(self.postgres.socket_dir, ignore_errors=True)
        else:
            self.postgres.destroy()

    def _install_signal_handlers(self) -> None:
        if not self.handle_signals or threading.current_thread() is not threading.main_thread():
            return

        def on_signal(signum, frame):
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

    # -- chaos helpers
    def restart_postgres(self, mode: str = "fast") -> None:
        """Stop and start the database on the same port (functions see broken connections, then reconnect)."""
        self.postgres.restart(mode=mode)
        self._track()

    def kill_function(self, name: str) -> None:
        """SIGKILL a function process (an instance dying mid-request); restart_function() brings it back."""
        fn = self.functions[name]
        if fn.process and fn.process.running():
            os.killpg(fn.process.pid, signal.SIGKILL)
            fn.process.popen.wait(timeout=10)

    def restart_function(self, name: str) -> None:
        """Stop (or after kill_function) and start a function again on the same port with the same environment."""
        fn = self.functions[name]
        fn.stop()
        fn.launch()
        fn.wait_ready()
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

    def env(self) -> dict[str, str]:
        """What an in-process client (a test, the demo) needs to talk to this stack."""
        env = {"GOOGLE_CLOUD_PROJECT": self.project}
        for component in (self.postgres, self.pubsub, self.firestore, self.sandbox):
            if component is not None and (component is not self.sandbox or component.url):
                env.update(component.env())
        if self.auth_url:
            env["AUTH_PUBLIC_URL"] = self.auth_url
        env["BLING_TOKEN_KEY"] = self.token_key
        return env

    def function_process_env(self, name: str = "") -> dict[str, str]:
        env = {**self.env(), "PYTHONPATH": str(REPO_ROOT), **self.function_env}
        if name == "scheduler":
            env.pop("BLING_TOKEN_KEY", None)  # as in Terraform: only the functions that call Bling get the key
        if name == "auth":
            env["AUTH_ADMIN_KEY"] = self.auth_admin_key  # as in Terraform: the operator's key is the auth function's only
        return env

    # -- logs
    def log_paths(self) -> dict[str, Path]:
        return {name: fn.log_path for name, fn in self.functions.items()}

    def log_text(self, names: Iterable[str] | None = None, include_infra: bool = False) -> str:
        paths = dict(self.log_paths())
        if include_infra and self.run_dir:
            for path in (self.run_dir / "logs").glob("*.log"):
                paths.setdefault(path.stem, path)
        wanted = set(names) if names is not None else set(paths)
        return "\n".join(p.read_text(encoding="utf-8", errors="replace") for n, p in sorted(paths.items())
                         if n in wanted and p.exists())

    def log_lines(self, names: Iterable[str] | None = None) -> list[dict]:
        """Every JSON log line the functions wrote, each with `_function` added (non-JSON lines are skipped)."""
        out: list[dict] = []
        wanted = set(names) if names is not None else None
        for name, path in sorted(self.log_paths().items()):
            if (wanted is not None and name not in wanted) or not path.exists():
                continue
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                line = line.strip()
                if not line.startswith("{"):
                    continue
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if isinstance(entry, dict):
                    entry["_function"] = name
                    out.append(entry)
        return out

    def last_log_activity(self) -> float:
        """Wall-clock time of the most recent write to any function log."""
        times = [p.stat().st_mtime for p in self.log_paths().values() if p.exists()]
        return max(times) if times else 0.0

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
                busiest = sorted(((p.stat().st_mtime, n) for n, p in self.log_paths().items() if p.exists()),
                                 reverse=True)[:3]
                detail = ", ".join(f"{n} wrote {time.time() - t:.1f}s ago" for t, n in busiest)
                raise TimeoutError(f"stack not quiet after {timeout_s:.0f}s (want {quiet_s:.0f}s without logs; "
                                   f"{detail or 'no logs'}; {predicate_error or 'logs still moving'}); "
                                   f"logs in {self.run_dir / 'logs'}")
            time.sleep(poll_s)

    # -- messaging
    def publish(self, topic: str, payload: Any, **attributes: str) -> str:
        return publish_json(self.pubsub, topic, payload, project=self.project, **attributes)

    def pull(self, subscription: str, **kwargs: Any) -> list[dict]:
        return pull_all(self.pubsub, subscription, project=self.project, **kwargs)

    def dead_letters(self, timeout_s: float = 2.0) -> dict[str, list[dict]]:
        """Pull (and ack) every dead-letter hold subscription: {topic: [messages]}."""
        from shared import topology

        return {r.topic: self.pull(r.dead_letter_subscription, timeout_s=timeout_s) for r in topology.ROUTES}

    # -- OAuth
    def authorize(self, timeout_s: float = 30.0, replace: bool = False) -> dict:
        """Do the consent like the operator: <auth>/start with the admin key → Bling authorize → <auth>/callback,
        in one browser session; return /status. replace=True confirms replacing a working authorization."""
        return authorize_through_auth_function(self.auth_url, self.auth_admin_key, replace=replace,
                                               timeout_s=timeout_s)

    def auth_status(self, timeout_s: float = 10.0) -> dict:
        """The auth function's /status, read as the operator."""
        return auth_status(self.auth_url, self.auth_admin_key, timeout_s=timeout_s)

    def elapsed_s(self) -> float:
        return time.monotonic() - self._started_at


def authorize_through_auth_function(auth_url: str, admin_key: str, *, replace: bool = False,
                                    timeout_s: float = 30.0) -> dict:
    """The operator's browser through the OAuth dance, with no redirect followed automatically: open /start (the
    key form), submit the key (and, if asked and `replace`, the confirmation), follow Bling's consent back to
    /callback with the same cookies. Returns the /status JSON."""
    import requests

    browser = requests.Session()  # its cookie jar binds the callback to this /start, as a browser's does
    opened = browser.get(auth_url + "/start", allow_redirects=False, timeout=timeout_s)
    if opened.status_code != 401 or 'type="password"' not in opened.text:
        raise RuntimeError(f"GET {auth_url}/start: expected the admin-key form (401), got {opened.status_code}: "
                           f"{opened.text[:300]}")
    start = browser.post(auth_url + "/start", data={"admin_key": admin_key}, allow_redirects=False, timeout=timeout_s)
    if start.status_code == 409 and replace:
        start = browser.post(auth_url + "/start", data={"admin_key": admin_key, "confirm": "replace"},
                             allow_redirects=False, timeout=timeout_s)
    if start.status_code not in (301, 302, 303, 307) or "Location" not in start.headers:
        hint = " (a working authorization exists: pass replace=True to replace it)" if start.status_code == 409 else ""
        raise RuntimeError(f"POST {auth_url}/start: expected a redirect, got {start.status_code}{hint}: "
                           f"{start.text[:300]}")
    authorize = requests.get(start.headers["Location"], allow_redirects=False, timeout=timeout_s)
    if authorize.status_code not in (301, 302, 303, 307) or "Location" not in authorize.headers:
        raise RuntimeError(f"GET authorize URL: expected a redirect, got {authorize.status_code}: "
                           f"{authorize.text[:300]}")
    callback_url = authorize.headers["Location"]
    if not callback_url.startswith(auth_url):
        raise RuntimeError(f"authorize redirected to {urllib.parse.urlsplit(callback_url)._replace(query='').geturl()}"
                           f", not to the auth function {auth_url}")
    callback = browser.get(callback_url, allow_redirects=False, timeout=timeout_s)
    if callback.status_code != 200:
        raise RuntimeError(f"GET {auth_url}/callback: expected 200, got {callback.status_code}: "
                           f"{callback.text[:300]}")
    return auth_status(auth_url, admin_key, timeout_s=timeout_s)


def auth_status(auth_url: str, admin_key: str, timeout_s: float = 10.0) -> dict:
    import requests

    status = requests.get(auth_url + "/status", headers={"Authorization": f"Bearer {admin_key}"}, timeout=timeout_s)
    if status.status_code != 200:
        raise RuntimeError(f"GET {auth_url}/status: {status.status_code}: {status.text[:300]}")
    return status.json()
