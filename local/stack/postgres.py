"""PostgreSQL for the local stack: a throwaway initdb/pg_ctl cluster on a free port, migrated with
`python -m shared.migrate` (the runner deployment uses)."""
from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from local.processes import free_port, pid_alive, run
from local.stack.base import HOST, REPO_ROOT, MissingDependency

if TYPE_CHECKING:
    import pg8000.dbapi


def postgres_bin_dir() -> Path:
    """The newest /usr/lib/postgresql/<major>/bin, else the directory of initdb on PATH."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                        key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0)
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    raise MissingDependency("PostgreSQL server binaries (initdb, pg_ctl) not found: run `make setup` "
                            "(apt-get install -y postgresql)")


class PostgresCluster:
    """A throwaway PostgreSQL cluster: initdb in data_dir, pg_ctl start on a free port of 127.0.0.1.

    TCP logins use scram-sha-256 with a generated password for `user`; the unix socket lives in a private temp dir
    and trusts local connections (used only to create the role and the database). As root, every PostgreSQL
    binary runs as the `postgres` OS user (initdb and postgres refuse to run as root).
    """

    def __init__(self, data_dir: Path, log_path: Path, port: int | None = None, user: str = "bling_etl",
                 database: str = "bling", password: str | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.log_path = Path(log_path)
        self.port = port or free_port()
        self.user = user
        self.database = database
        self.password = password or secrets.token_urlsafe(18)
        # The search_path of connect() when it names none: the schema of the account a stack or a test session
        # runs as (set once that schema exists), so unqualified queries read that account's tables.
        self.default_schema: str | None = None
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
        socket_dir = self.socket_dir
        if socket_dir is None or not socket_dir.exists():
            socket_dir = self.socket_dir = Path(tempfile.mkdtemp(prefix="bling-pg-"))
            os.chmod(socket_dir, 0o755)
            self._chown(socket_dir)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.touch()
        self._chown(self.log_path)
        options = (f"-p {self.port} -k {socket_dir} -c listen_addresses={HOST} -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        run(self._cmd(str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_path), "-w",
                      "-t", "60", "-o", options, "start"), what="pg_ctl start", cwd="/tmp")
        self._started = True
        pid = self.pid
        if pid:
            self._pids.add(pid)
        self._ensure_role_and_database(socket_dir)
        return self

    def _ensure_role_and_database(self, socket_dir: Path) -> None:
        import pg8000.dbapi

        conn = pg8000.dbapi.connect(user="postgres", database="postgres",
                                    unix_sock=str(socket_dir / f".s.PGSQL.{self.port}"))
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
            except (RuntimeError, OSError, subprocess.TimeoutExpired):  # pg_ctl failed, hung or is gone
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

    def close(self, mode: str = "fast") -> None:
        """Stop and delete the socket directory; the data directory stays (make demo's data, for make psql)."""
        self.stop(mode=mode)
        if self.socket_dir:
            shutil.rmtree(self.socket_dir, ignore_errors=True)

    def destroy(self) -> None:
        """Stop and delete the data directory and the socket directory."""
        self.close(mode="immediate")  # the data is deleted next: no shutdown checkpoint to wait for
        shutil.rmtree(self.data_dir, ignore_errors=True)

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

    def accounts_db(self, command: str, account: str, python: str | None = None) -> str:
        """`python -m shared.ops.accounts_db <command> <account>` (create: a new account's schema; adopt: move a
        single-account install from public into the account's schema), as an operator runs it."""
        env = {**os.environ, **self.env(), "PYTHONPATH": str(REPO_ROOT)}
        env.pop("CLOUD_SQL_INSTANCE", None)
        return run([python or sys.executable, "-m", "shared.ops.accounts_db", command, account], env=env,
                   cwd=REPO_ROOT, what=f"python -m shared.ops.accounts_db {command}")

    def connect(self, schema: str | None = None) -> pg8000.dbapi.Connection:
        """A new pg8000 connection as the application user over TCP. Its search_path: `schema` (an account's
        schema, so unqualified table names are that account's), else `default_schema` (the account the stack or
        the tests run as), else the server's default (public)."""
        import pg8000.dbapi

        path = schema or self.default_schema
        return pg8000.dbapi.connect(host=HOST, port=self.port, database=self.database, user=self.user,
                                    password=self.password, timeout=30,
                                    startup_params={"search_path": path} if path else None)

    def tables(self) -> list[str]:
        """The application's tables, `schema.table`: public's and every account schema's."""
        conn = self.connect()
        try:
            return _table_names(conn.cursor())
        finally:
            conn.close()

    def truncate_all(self, keep: Iterable[str] = ("schema_migrations",)) -> None:
        """Empty every application table (public's and every account schema's) but those in `keep` (names as
        tables() gives them, or bare table names: that table in every schema)."""
        conn = self.connect()
        try:
            cur = conn.cursor()
            kept = set(keep)
            names = [name for name in _table_names(cur) if name not in kept and name.rsplit(".", 1)[-1] not in kept]
            if names:
                cur.execute("TRUNCATE " + ", ".join(quote_table(n) for n in names) + " RESTART IDENTITY CASCADE")
            conn.commit()
        finally:
            conn.close()



def quote_table(name: str) -> str:
    """A name as tables() gives it (`table` or `schema.table`), quoted for SQL text."""
    return ".".join(f'"{part}"' for part in name.split("."))


def _table_names(cur: pg8000.dbapi.Cursor) -> list[str]:
    """The application's tables (public's and each account schema's, bling_<slug>), as `schema.table`."""
    cur.execute(r"SELECT table_schema, table_name FROM information_schema.tables "
                r"WHERE (table_schema = 'public' OR table_schema LIKE 'bling\_%') AND table_type = 'BASE TABLE' "
                "ORDER BY table_schema <> 'public', table_schema, table_name")
    return [f"{schema}.{name}" for schema, name in cur.fetchall()]
