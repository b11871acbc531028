"""Database access: a `Database` per process (its composition root builds it) with one connection per thread,
created on first use, and a transaction helper; the pure helpers (sqlstate, upsert, ...) are module functions.

Functions run with concurrency 1, so in production one connection per instance is the pool (the Cloud SQL
connection budget is max_instances × 1; see infra/functions.tf). Locally functions-framework serves concurrent
pushes on threads, each thread standing for one instance, hence one connection per thread. Locally and in tests
DB_HOST points at a PostgreSQL server and pg8000 connects directly; in production CLOUD_SQL_INSTANCE goes through
the Cloud SQL Python Connector with lazy refresh (the CPU is throttled between invocations, so no background
refresh).

A broken connection (database restarted, network cut) is dropped and the error surfaces as RetryableError, so
Pub/Sub delivers the message again and the next attempt reconnects.
"""
from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pg8000.dbapi

from shared import secrets
from shared.config import Settings
from shared.errors import ConfigurationError, RetryableError

# What a statement's parameters may be: positional (%s) or named.
SqlParams = tuple[Any, ...] | list[Any] | dict[str, Any]

# SQLSTATE classes that mean "try again": connection exceptions, serialization failures/deadlocks, the server
# shutting down or out of resources.
_RETRYABLE_SQLSTATE_PREFIXES = ("08", "40", "53", "57P")


def sqlstate(exc: BaseException) -> str:
    """PostgreSQL's SQLSTATE of a pg8000 error ("" when it carries none): the one place that reads it."""
    fields = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
    return str(fields.get("C", ""))


def server_message(exc: BaseException) -> str:
    """PostgreSQL's own message of a pg8000 error (its field M), else the exception's text."""
    fields = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
    return str(fields.get("M", exc))


def is_data_exception(exc: BaseException) -> bool:
    """SQLSTATE class 22: a value the column cannot hold; the same on every delivery, so never retried."""
    return sqlstate(exc).startswith("22")


def _is_retryable(exc: Exception) -> bool:
    if isinstance(exc, (pg8000.dbapi.InterfaceError, OSError, ConnectionError)):
        return True
    return sqlstate(exc).startswith(_RETRYABLE_SQLSTATE_PREFIXES)


_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")


def _checked_schema(schema: str) -> str:
    """One plain schema name: search_path takes a list, so "bling_a, public" would silently add public."""
    if not _IDENTIFIER.fullmatch(schema):
        raise ValueError(f"not a plain schema name: {schema!r}")
    return schema


# A connection idle this long is checked (SELECT 1) before use, and replaced if the server closed it meanwhile.
_CHECK_IDLE_S = 1.0


class Database:
    """One process's database (built by its composition root, shared.deps.Deps.database, from its Settings): one
    connection per thread, opened on first use, and the Cloud SQL connector, created on first use too.

    Every connection it opened is also kept in a list, so `close()` can end them all (the test process builds one
    Database per test environment and closes the previous one's connections, whichever threads opened them)."""

    def __init__(self, settings: Settings):
        self._settings = settings
        self._local = threading.local()
        self._connector: Any = None
        self._lock = threading.Lock()  # the connector's creation, the list of open connections
        self._open: list[pg8000.dbapi.Connection] = []

    def __repr__(self) -> str:
        return f"Database({self._settings.db_host or self._settings.cloud_sql_instance!r}, {self._settings.db_name!r})"

    def connect(self) -> pg8000.dbapi.Connection:
        """A new connection (not this thread's: transaction() is the way in)."""
        settings = self._settings
        password = secrets.resolve(settings.db_password, settings.db_password_secret, "DB password", required=False)
        if settings.db_host:
            return pg8000.dbapi.connect(host=settings.db_host, port=settings.db_port, database=settings.db_name,
                                        user=settings.db_user, password=password or None, timeout=30,
                                        application_name="bling-etl")
        if settings.cloud_sql_instance:
            with self._lock:
                if self._connector is None:
                    from google.cloud.sql.connector import Connector

                    self._connector = Connector(refresh_strategy="lazy")
            connection: pg8000.dbapi.Connection = self._connector.connect(
                settings.cloud_sql_instance, "pg8000", user=settings.db_user, password=password, db=settings.db_name)
            return connection
        raise ConfigurationError("no database configured: set DB_HOST (direct) or CLOUD_SQL_INSTANCE (connector)")

    def reset_connection(self) -> None:
        """Drop this thread's connection (after a failure, or in tests after the database was restarted)."""
        connection = getattr(self._local, "connection", None)
        self._local.connection = None
        if connection is not None:
            self._forget(connection)

    def close(self) -> None:
        """Close every connection this Database opened, on any thread, and its connector. For the end of a process
        or of a test environment: a thread that uses it afterwards finds its connection dead and opens another."""
        with self._lock:
            connections, self._open = self._open, []
            connector, self._connector = self._connector, None
        for connection in connections:
            with contextlib.suppress(Exception):
                connection.close()
        if connector is not None:
            with contextlib.suppress(Exception):
                connector.close()

    def _forget(self, connection: pg8000.dbapi.Connection) -> None:
        with self._lock:
            if connection in self._open:
                self._open.remove(connection)
        with contextlib.suppress(Exception):
            connection.close()

    def _live_connection(self) -> pg8000.dbapi.Connection:
        """This thread's connection. After a database restart every idle connection is dead; finding that out by
        failing the message would spend one Pub/Sub delivery attempt per idle connection (several in a row reach
        the dead-letter topic), so an idle one is checked first and quietly replaced."""
        local = self._local
        connection = getattr(local, "connection", None)
        if connection is not None and connection not in self._open:  # close() ended it: open another, quietly
            connection = local.connection = None
        now = time.monotonic()
        if connection is not None and now - getattr(local, "used_at", now) > _CHECK_IDLE_S:
            try:
                connection.cursor().execute("SELECT 1")
                connection.rollback()
            except Exception as exc:
                if not _is_retryable(exc):
                    raise
                self.reset_connection()
                connection = None
        if connection is None:
            connection = self.connect()
            with self._lock:
                self._open.append(connection)
            local.connection = connection
        local.used_at = now
        return connection

    @contextlib.contextmanager
    def transaction(self, schema: str | None = None) -> Iterator[pg8000.dbapi.Cursor]:
        """A cursor inside one transaction: commit on success, rollback on any error.

        `schema`: an account's schema (shared.accounts.schema_for). The store layer's unqualified table names then
        resolve there and only there (search_path is that one schema, so a missing table is an error, never a
        fallback to public), for this transaction only: connections are reused across accounts, so the setting is
        transaction-local (set_config(..., true)) and ends with the COMMIT or ROLLBACK. None: the connection's
        default search_path (public), the single-account layout before issue 14.

        Connection-level failures become RetryableError (after dropping the connection); other database errors
        propagate unchanged, so a constraint violation caused by bad data is not retried as if it were transient.
        """
        try:
            connection = self._live_connection()
            cursor = connection.cursor()
        except Exception as exc:
            self.reset_connection()
            if _is_retryable(exc):
                raise RetryableError(f"database unavailable: {type(exc).__name__}: {exc}") from exc
            raise
        try:
            if schema is not None:
                cursor.execute("SELECT set_config('search_path', %s, true)", (_checked_schema(schema),))
            yield cursor
            connection.commit()
        except Exception as exc:
            with contextlib.suppress(Exception):
                connection.rollback()
            if _is_retryable(exc):
                self.reset_connection()
                raise RetryableError(f"database error, will retry: {type(exc).__name__}: {exc}") from exc
            raise

    def fetch_all(self, sql: str, params: SqlParams = (), schema: str | None = None) -> list[tuple[Any, ...]]:
        with self.transaction(schema) as cur:
            cur.execute(sql, params)
            return list(cur.fetchall()) if cur.description else []

    def execute(self, sql: str, params: SqlParams = (), schema: str | None = None) -> None:
        with self.transaction(schema) as cur:
            cur.execute(sql, params)


class SchemaDb:
    """One account's database: transaction/fetch_all/execute of a Database with `schema` (its schema) fixed, so a
    store function that receives it can only reach that account's tables. `prepare()` runs before every
    transaction (the composition root passes a once-per-process check that the schema exists and is migrated)."""

    def __init__(self, database: Database, schema: str, prepare: Callable[[], object] = lambda: None):
        self.database = database
        self.schema = _checked_schema(schema)
        self._prepare = prepare

    def __repr__(self) -> str:
        return f"SchemaDb({self.schema!r})"

    @contextlib.contextmanager
    def transaction(self) -> Iterator[pg8000.dbapi.Cursor]:
        self._prepare()
        with self.database.transaction(self.schema) as cursor:
            yield cursor

    def fetch_all(self, sql: str, params: SqlParams = ()) -> list[tuple[Any, ...]]:
        self._prepare()
        return self.database.fetch_all(sql, params, self.schema)

    def execute(self, sql: str, params: SqlParams = ()) -> None:
        self._prepare()
        self.database.execute(sql, params, self.schema)


def upsert(cur: Any, table: str, row: Mapping[str, Any], key: str = "id", casts: Mapping[str, str] | None = None,
           touch: str | None = "atualizado_em", prelude: str = "", prelude_params: tuple[Any, ...] = ()) -> None:
    """INSERT one row (column → value, as a mapper returns it) or, on a conflict on `key`, update every other
    column, and set `touch` to now(). `casts`: column → type of its placeholder (%s::jsonb). `prelude`: a
    constant WITH clause run in the same statement (one round trip), with its own parameters.

    Values only ever travel as parameters; the names are the mapper's literal keys, checked here to be plain
    identifiers (tests/integration/security/test_sql_is_parameterized.py checks that table and prelude are literals)."""
    casts = casts or {}
    names = [table, key, *row, *casts, *([touch] if touch else [])]
    bad = [n for n in names if not _IDENTIFIER.match(n)]
    if bad:
        raise ValueError(f"not plain SQL identifiers: {bad}")
    columns = ", ".join(row)
    placeholders = ", ".join(f"%s::{casts[c]}" if c in casts else "%s" for c in row)
    updates = ", ".join([*(f"{c} = EXCLUDED.{c}" for c in row if c != key), *([f"{touch} = now()"] if touch else [])])
    cur.execute(f"{prelude}INSERT INTO {table} ({columns}) VALUES ({placeholders}) "
                f"ON CONFLICT ({key}) DO UPDATE SET {updates}", [*prelude_params, *row.values()])
