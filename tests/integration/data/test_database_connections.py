"""shared.db.Database: the connections a composition root opens are its own, and closing it ends them all, whichever
thread opened them (the test process builds one per test environment: PostgreSQL's max_connections must never
see them pile up)."""
from __future__ import annotations

import threading
import time

from shared.config import read_settings
from shared.db import Database
from tests.integration.process_deps import current_deps, forget_deps


def _etl_backends(postgres) -> int:
    """Server processes of the application's connections (application_name bling-etl), seen from outside."""
    conn = postgres.connect()
    try:
        cur = conn.cursor()
        cur.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'bling-etl' AND pid <> "
                    "pg_backend_pid()")
        return int(cur.fetchone()[0])
    finally:
        conn.close()


def _settles_at(postgres, expected: int, timeout_s: float = 5.0) -> int:
    """The count once it reaches `expected` (a backend ends shortly after its socket closes), else the last seen."""
    deadline = time.monotonic() + timeout_s
    while (seen := _etl_backends(postgres)) != expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return seen


def _use_on_threads(database: Database, threads: int) -> None:
    def work() -> None:
        assert database.fetch_all("SELECT 1") == [[1]]

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def test_close_ends_the_connection_of_every_thread_and_the_database_reopens_after(db_env, postgres):
    baseline = _settles_at(postgres, 0)
    database = Database(read_settings())
    assert database.fetch_all("SELECT 1") == [[1]]
    _use_on_threads(database, 2)  # each thread its own connection; those threads are gone, their connections not
    assert _settles_at(postgres, baseline + 3) == baseline + 3
    database.close()
    assert _settles_at(postgres, baseline) == baseline
    # This thread's closed connection is replaced quietly: no RetryableError, no delivery attempt spent.
    assert database.fetch_all("SELECT 2") == [[2]]
    assert _settles_at(postgres, baseline + 1) == baseline + 1
    database.close()
    assert _settles_at(postgres, baseline) == baseline


def test_forget_deps_closes_the_test_process_database_between_tests(db_env, postgres):
    baseline = _settles_at(postgres, 0)
    _use_on_threads(current_deps().database, 2)
    assert current_deps().database.fetch_all("SELECT 1") == [[1]]
    assert _settles_at(postgres, baseline + 3) == baseline + 3
    forget_deps()  # what tests/conftest.py does before and after every test
    assert _settles_at(postgres, baseline) == baseline
