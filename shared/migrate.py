"""Apply the numbered SQL files in migrations/ that this database has not applied yet.

One small runner for the demo, the tests and deployment (Cloud Build runs `python -m shared.migrate`). Each file
runs in its own transaction together with its row in schema_migrations, so a failed migration leaves nothing
half-applied; an advisory lock keeps two runners from applying the same file at once; a file whose checksum
changed after it was applied is refused (migrations are append-only).
"""
from __future__ import annotations

import hashlib
import pathlib
import re
import sys

from shared import db, log

MIGRATIONS_DIR = pathlib.Path(__file__).resolve().parent.parent / "migrations"
_FILE_PATTERN = re.compile(r"^(\d{3,})_[a-z0-9_]+\.sql$")
# The advisory lock of this runner, in the two-integer key space (invoice upserts lock single bigint keys: the
# two key spaces never overlap).
_LOCK_KEY = (727, 1)


def migration_files(directory: pathlib.Path = MIGRATIONS_DIR) -> list[pathlib.Path]:
    files = sorted(p for p in directory.iterdir() if _FILE_PATTERN.match(p.name))
    versions = [m.group(1) for p in files if (m := _FILE_PATTERN.match(p.name))]
    if len(set(versions)) != len(versions):
        raise SystemExit(f"two migrations share a number in {directory}")
    return files


def apply_all(directory: pathlib.Path = MIGRATIONS_DIR) -> list[str]:
    applied_now: list[str] = []
    with db.transaction() as cur:
        cur.execute("""CREATE TABLE IF NOT EXISTS schema_migrations (
                         filename text PRIMARY KEY, checksum text NOT NULL,
                         applied_at timestamptz NOT NULL DEFAULT now())""")
    for path in migration_files(directory):
        sql = path.read_text(encoding="utf-8")
        checksum = hashlib.sha256(sql.encode()).hexdigest()
        with db.transaction() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", _LOCK_KEY)
            cur.execute("SELECT checksum FROM schema_migrations WHERE filename = %s", (path.name,))
            row = cur.fetchone()
            if row:
                if row[0] != checksum:
                    raise SystemExit(f"{path.name} changed after it was applied; add a new migration instead")
                continue
            # Simple-query protocol: a migration file holds many statements (the extended protocol takes one).
            cur.connection.execute_simple(sql)
            cur.execute("INSERT INTO schema_migrations (filename, checksum) VALUES (%s, %s)", (path.name, checksum))
            applied_now.append(path.name)
            log.info("migration applied", migration=path.name)
    return applied_now


def main() -> int:
    with log.bind(function="migrate"):
        applied = apply_all()
        log.info("migrations up to date", applied_now=applied, applied_count=len(applied))
    return 0


if __name__ == "__main__":
    sys.exit(main())
