"""Give the legacy read-only BI role (migrations/004_bi_read_role.sql) LOGIN and its password from Secret Manager.

    BI_PASSWORD=... python infra/bi_role.py        # with the same DB_* / CLOUD_SQL_INSTANCE as python -m shared.migrate

Run by Cloud Build's migrations step right after `python -m shared.migrate`, through the same connection code
(shared.db), as the ETL user. Idempotent: every run sets the password again, so rotating it is "add a secret
version, run the build". How the password travels (only its SCRAM verifier, as a bind parameter) is
shared.ops.accounts_db.set_login_password, the one place that sets a reader role's login; an account's own
reader role gets its login from `python -m shared.ops.accounts_db grant-reader <account> --password-stdin`.

bling_bi reads a single-account install (public). After `accounts_db adopt <first account>` it is a member of
that account's reader role, with that schema as its search_path (ADR 011): the same login, the same dashboards,
that account's data and no other's.
"""
from __future__ import annotations

import os
import pathlib
import sys

# Run as a script (infra/ is not a package): the repository root holds `shared`.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from shared import log
from shared.config import read_settings
from shared.db import Database
from shared.ops.accounts_db import LEGACY_READER_ROLE as ROLE
from shared.ops.accounts_db import set_login_password


def main() -> int:
    password = os.environ.get("BI_PASSWORD", "")
    if not password:
        print("BI_PASSWORD is empty: add a version to the bling-bi-password secret (docs/RUNBOOK.md)", file=sys.stderr)
        return 1
    database = Database(read_settings())  # the composition root of this script
    try:
        with log.bind(function="bi_role"):
            set_login_password(database, ROLE, password)
            log.info("BI role can log in with the bling-bi-password secret", role=ROLE)
    finally:
        database.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
