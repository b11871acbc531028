"""Give the read-only BI role (migrations/004_bi_read_role.sql) LOGIN and its password from Secret Manager.

    BI_PASSWORD=... python infra/bi_role.py        # with the same DB_* / CLOUD_SQL_INSTANCE as python -m shared.migrate

Run by Cloud Build's migrations step right after `python -m shared.migrate`, through the same connection code
(shared.db), as the ETL user. Idempotent: every run sets the password again, so rotating it is "add a secret
version, run the build".

The password never reaches the server in clear, nor any log: the client computes the SCRAM-SHA-256 verifier (what
PostgreSQL stores), passes it as a bind parameter into a transaction-local setting, and a DO block quotes it into
ALTER ROLE with format(%L) (utility statements take no bind parameters; log_statement=ddl logs the DO text, which
holds no secret).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import pathlib
import sys

# Run as a script (infra/ is not a package): the repository root holds `shared`.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from shared import db, log

ROLE = "bling_bi"
_ITERATIONS = 4096  # PostgreSQL's default scram_iterations


def scram_sha256_verifier(password: str, salt: bytes | None = None, iterations: int = _ITERATIONS) -> str:
    """PostgreSQL's stored form of a SCRAM-SHA-256 password (RFC 5802/7677; src/common/scram-common.c)."""
    salt = salt if salt is not None else os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    b64 = lambda raw: base64.b64encode(raw).decode("ascii")  # noqa: E731
    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def set_login_password(password: str) -> None:
    if len(password) < 16:
        raise SystemExit("BI_PASSWORD must be at least 16 characters (docs/RUNBOOK.md shows how to generate one)")
    with db.transaction() as cur:
        cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (ROLE,))
        if cur.fetchone() is None:
            raise SystemExit(f"role {ROLE} does not exist: run python -m shared.migrate first (migration 004)")
        cur.execute("SELECT set_config('bling.bi_verifier', %s, true)", (scram_sha256_verifier(password),))
        cur.execute("""DO $$ BEGIN
                         EXECUTE format('ALTER ROLE bling_bi WITH LOGIN PASSWORD %L',
                                        current_setting('bling.bi_verifier'));
                       END $$""")


def main() -> int:
    password = os.environ.get("BI_PASSWORD", "")
    if not password:
        print("BI_PASSWORD is empty: add a version to the bling-bi-password secret (docs/RUNBOOK.md)", file=sys.stderr)
        return 1
    with log.bind(function="bi_role"):
        set_login_password(password)
        log.info("BI role can log in with the bling-bi-password secret", role=ROLE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
