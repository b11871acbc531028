"""make psql: open psql on the database the last `make demo` left in .stack/demo/pgdata.

Starts that cluster on a free port (unix socket in a temp dir), runs psql as the application user, and stops the
cluster when psql exits. Extra arguments go to psql, e.g. `python -m local.psql -c "SELECT count(*) FROM nfe"`.
"""
from __future__ import annotations

import subprocess
import sys

from local.stack import STACK_DIR, PostgresCluster


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    data_dir = STACK_DIR / "demo" / "pgdata"
    if not (data_dir / "PG_VERSION").exists():
        print(f"no demo database in {data_dir}: run `make demo` first", file=sys.stderr)
        return 2
    cluster = PostgresCluster(data_dir, STACK_DIR / "demo" / "logs" / "postgres-psql.log")
    cluster.start()
    try:
        print(f"PostgreSQL {data_dir} on 127.0.0.1:{cluster.port} (stopped when psql exits)", flush=True)
        return subprocess.call([str(cluster.bin_dir / "psql"), "-h", str(cluster.socket_dir), "-p",
                                str(cluster.port), "-U", cluster.user, "-d", cluster.database, *argv])
    finally:
        cluster.close()


if __name__ == "__main__":
    sys.exit(main())
