"""A database of its own per test, owned by a user shaped like Cloud SQL's bling_etl (LOGIN CREATEROLE CREATEDB,
not a superuser): the one who creates schemas and reader roles in production. Roles are cluster-wide, so every
test's account slugs carry a suffix of their own and the roles they made are dropped afterwards."""
from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Iterator

import pg8000.dbapi
import pytest


@dataclasses.dataclass
class AccountDatabase:
    env: dict[str, str]
    suffix: str
    superuser_socket: str

    def as_superuser(self, sql: str) -> None:
        """One statement as the cluster's superuser (what no application user could do: a test's fault)."""
        conn = pg8000.dbapi.connect(user="postgres", database=self.env["DB_NAME"], unix_sock=self.superuser_socket)
        try:
            conn.cursor().execute(sql)
            conn.commit()
        finally:
            conn.close()

    def account(self, name: str) -> str:
        """A slug unique to this test (roles outlive databases)."""
        return f"{name}-{self.suffix}"

    def connect(self, user: str | None = None, password: str | None = None) -> pg8000.dbapi.Connection:
        return pg8000.dbapi.connect(host=self.env["DB_HOST"], port=int(self.env["DB_PORT"]),
                                    database=self.env["DB_NAME"], user=user or self.env["DB_USER"],
                                    password=password or self.env["DB_PASSWORD"], timeout=30)


@pytest.fixture
def account_db(postgres, request) -> Iterator[AccountDatabase]:
    """Parametrize indirectly with False for a plain database owner (the local stack's user: no CREATEROLE)."""
    from shared import config
    from tests.integration.process_deps import forget_deps

    may_create_roles = getattr(request, "param", True)

    suffix = uuid.uuid4().hex[:8]
    user, password, database = f"etl_{suffix}", uuid.uuid4().hex, f"accounts_{suffix}"
    socket = str(postgres.socket_dir / f".s.PGSQL.{postgres.port}")
    admin = pg8000.dbapi.connect(user="postgres", database="postgres", unix_sock=socket)
    admin.autocommit = True
    cur = admin.cursor()
    cur.execute(f"CREATE ROLE {user} LOGIN {'CREATEROLE CREATEDB' if may_create_roles else ''} PASSWORD '{password}'")
    cur.execute(f"CREATE DATABASE {database} OWNER {user}")
    env = {**postgres.env(), "DB_USER": user, "DB_PASSWORD": password, "DB_NAME": database}
    os.environ.update(env)
    os.environ.pop("CLOUD_SQL_INSTANCE", None)
    config.reset_settings_cache()
    forget_deps()  # the test process's database is now this one
    try:
        yield AccountDatabase(env, suffix, socket)
    finally:
        forget_deps()  # its connections closed before the database goes
        cur.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        cur.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE %s", (f"bling\\_bi\\_%{suffix}",))
        for (role,) in cur.fetchall():
            cur.execute(f'DROP ROLE "{role}"')
        cur.execute(f"REASSIGN OWNED BY {user} TO CURRENT_USER")
        cur.execute(f"DROP OWNED BY {user}")
        cur.execute(f"DROP ROLE IF EXISTS {user}")
        admin.close()
