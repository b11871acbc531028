"""The isolation proof of issue 14: an account's analyst, logged in as that account's reader role, reads that
account's tables (including tables a later migration adds) and nothing else: not another account's, not public's,
and writes nothing anywhere."""
from __future__ import annotations

import io
import uuid

import pg8000.dbapi
import pytest

from shared import db, migrate
from shared.accounts import reader_role_for, schema_for
from shared.ops import accounts_db
from tests.integration.process_deps import database

PERMISSION_DENIED = "42501"
READ_ONLY_TRANSACTION = "25006"


def _two_accounts_with_rows(account_db) -> tuple[str, str]:
    a, b = account_db.account("alfa"), account_db.account("beta")
    for account, ids in ((a, (1, 2, 3)), (b, (9,))):
        migrate.ensure_account_schema(database(), account)
        for nfe_id in ids:
            database().execute("INSERT INTO nfe (id, tipo, situacao, raw) VALUES (%s, 1, 5, '{}')", (nfe_id,),
                       schema=schema_for(account))
        database().execute("INSERT INTO contato (id, nome) VALUES (%s, %s)", (ids[0], account),
                           schema=schema_for(account))
    migrate.apply_all(database())  # public: an un-adopted install with a row of its own
    database().execute("INSERT INTO nfe (id, tipo, situacao, raw) VALUES (100, 1, 5, '{}')")
    return a, b


def _login(account_db, account: str) -> pg8000.dbapi.Connection:
    password = "pw-" + uuid.uuid4().hex
    assert accounts_db.main(["grant-reader", account, "--password-stdin"], stdin=io.StringIO(password + "\n")) == 0
    return account_db.connect(user=reader_role_for(account), password=password)


def _sqlstate_of(conn: pg8000.dbapi.Connection, statement: str) -> str:
    cur = conn.cursor()
    with pytest.raises(pg8000.dbapi.DatabaseError) as info:
        cur.execute(statement)
    conn.rollback()
    return db.sqlstate(info.value)


def test_the_reader_role_of_account_a_reads_a_and_nothing_else(account_db):
    a, b = _two_accounts_with_rows(account_db)
    conn = _login(account_db, a)
    try:
        cur = conn.cursor()
        cur.execute("SELECT id FROM nfe ORDER BY id")  # unqualified: its search_path is its own schema
        assert list(cur.fetchall()) == [[1], [2], [3]]
        cur.execute(f"SELECT nome FROM {schema_for(a)}.contato")
        assert list(cur.fetchall()) == [[a]]
        cur.execute("SELECT count(*) FROM etl_window_resumo")  # views too
        assert cur.fetchone() == [0]
        conn.rollback()

        for table in ("nfe", "contato", "etl_run", "schema_migrations", "nfe_autorizada"):
            assert _sqlstate_of(conn, f"SELECT * FROM {schema_for(b)}.{table}") == PERMISSION_DENIED, table
            assert _sqlstate_of(conn, f"SELECT * FROM public.{table}") == PERMISSION_DENIED, table
        assert _sqlstate_of(conn, "INSERT INTO nfe (id, tipo, situacao, raw) VALUES (4, 1, 5, '{}')") \
            == READ_ONLY_TRANSACTION
        assert _sqlstate_of(conn, f"SET ROLE {reader_role_for(b)}") == PERMISSION_DENIED
        assert _sqlstate_of(conn, f"SET ROLE {account_db.env['DB_USER']}") == PERMISSION_DENIED
    finally:
        conn.close()


def test_a_table_a_later_migration_creates_is_readable_by_its_account_only(account_db, tmp_path):
    a, b = _two_accounts_with_rows(account_db)
    new = tmp_path / "migrations"
    new.mkdir()
    for path in migrate.migration_files():
        (new / path.name).write_bytes(path.read_bytes())
    (new / "900_tabela_nova.sql").write_text(
        "CREATE TABLE tabela_nova (id bigint PRIMARY KEY);\nINSERT INTO tabela_nova VALUES (42);\n"
        "CREATE VIEW tabela_nova_v AS SELECT id FROM tabela_nova;\n")
    # apply_all alone, not ensure_account_schema: no GRANT runs after the file, only the default privileges.
    assert migrate.apply_all(database(), schema_for(a), new) == ["900_tabela_nova.sql"]
    assert migrate.apply_all(database(), schema_for(b), new) == ["900_tabela_nova.sql"]

    conn = _login(account_db, a)
    try:
        cur = conn.cursor()
        cur.execute("SELECT id FROM tabela_nova")
        assert list(cur.fetchall()) == [[42]]
        cur.execute("SELECT id FROM tabela_nova_v")
        assert list(cur.fetchall()) == [[42]]
        conn.rollback()
        assert _sqlstate_of(conn, f"SELECT * FROM {schema_for(b)}.tabela_nova") == PERMISSION_DENIED
    finally:
        conn.close()


def test_rerunning_ensure_revokes_a_grant_made_by_hand_on_another_account(account_db):
    a, b = _two_accounts_with_rows(account_db)
    database().execute(f"GRANT USAGE ON SCHEMA {schema_for(b)} TO {reader_role_for(a)}")
    database().execute(f"GRANT SELECT ON {schema_for(b)}.nfe TO {reader_role_for(a)}")
    database().execute(f"GRANT SELECT ON public.nfe TO {reader_role_for(a)}")
    database().execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema_for(b)} "
                       f"GRANT SELECT ON TABLES TO {reader_role_for(a)}")

    migrate.ensure_account_schema(database(), a)
    database().execute(f"CREATE TABLE {schema_for(b)}.tabela_depois (id int)")  # the default privilege is gone too

    conn = _login(account_db, a)
    try:
        assert _sqlstate_of(conn, f"SELECT * FROM {schema_for(b)}.nfe") == PERMISSION_DENIED
        assert _sqlstate_of(conn, "SELECT * FROM public.nfe") == PERMISSION_DENIED
    finally:
        conn.close()
    # The table's own ACL, apart from USAGE on its schema: no default privilege survived to grant it.
    assert database().fetch_all("SELECT has_table_privilege(%s, %s, 'SELECT')",
                        (reader_role_for(a), f"{schema_for(b)}.tabela_depois")) == [[False]]


def test_grant_reader_reads_the_password_from_stdin_and_never_prints_it(account_db, capsys):
    account = account_db.account("alfa")
    migrate.ensure_account_schema(database(), account)
    password = "pw-" + uuid.uuid4().hex

    assert accounts_db.main(["grant-reader", account, "--password-stdin"], stdin=io.StringIO(password)) == 0
    account_db.connect(user=reader_role_for(account), password=password).close()
    out = capsys.readouterr()
    assert password not in out.out + out.err
    assert reader_role_for(account) in out.out  # the log line names the role, not the secret

    with pytest.raises(SystemExit, match="at least 16"):
        accounts_db.main(["grant-reader", account, "--password-stdin"], stdin=io.StringIO("short\n"))
    with pytest.raises(SystemExit, match="does not exist"):
        accounts_db.main(["grant-reader", account_db.account("nobody"), "--password-stdin"],
                         stdin=io.StringIO(password))
    with pytest.raises(SystemExit):  # argparse: a password argument does not exist, stdin is required
        accounts_db.main(["grant-reader", account])
    with pytest.raises(ValueError, match="not a read-only role"):
        accounts_db.set_login_password(database(), account_db.env["DB_USER"], password)
