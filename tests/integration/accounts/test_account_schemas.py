"""Each account's tables in its own schema (issue 14, ADR 011): the migrations applied per schema, every account
schema found and migrated by `python -m shared.migrate`, and the store layer's unqualified names resolving in the
schema database().transaction(schema=...) names, for that transaction only."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pg8000.dbapi
import pytest

from shared import db, migrate, nfe_store
from shared.accounts import reader_role_for, schema_for
from shared.ops import accounts_db
from tests.integration.process_deps import database

REPO = Path(__file__).resolve().parents[3]
ALL_FILES = [p.name for p in migrate.migration_files()]
ACCOUNT_FILES = [name for name in ALL_FILES if name not in migrate.PUBLIC_ONLY]


def _nfe(nfe_id: int, situacao: int = 5, codigo: str = "SKU-1") -> dict:
    return {"id": nfe_id, "tipo": 1, "situacao": situacao, "numero": str(nfe_id), "serie": 1,
            "dataEmissao": "2024-03-02 10:00:00", "contato": {"id": 70, "nome": "Cliente"},
            "valorNota": 10, "itens": [{"codigo": codigo, "quantidade": 1, "valor": 10, "valorTotal": 10}]}


def _relations(schema: str) -> set[str]:
    return {r[0] for r in database().fetch_all("""SELECT c.relname FROM pg_class c JOIN pg_namespace n
                                             ON n.oid = c.relnamespace WHERE n.nspname = %s
                                             AND c.relkind IN ('r', 'v', 'S')""", (schema,))}


def test_ensure_account_schema_creates_migrates_and_is_idempotent(account_db):
    account = account_db.account("lojas")
    schema = schema_for(account)

    assert migrate.ensure_account_schema(database(), account) == ACCOUNT_FILES
    assert migrate.ensure_account_schema(database(), account) == []

    tables = _relations(schema)
    assert {"nfe", "nfe_item", "nfe_parcela", "contato", "produto", "produto_sku", "forma_pagamento",
            "nfe_situacao", "etl_run", "etl_window", "etl_window_nfe", "etl_message_failures",
            "schema_migrations", "etl_window_resumo", "nfe_autorizada"} <= tables
    assert _relations("public") == set()  # nothing leaked into public
    recorded = [r[0] for r in database().fetch_all(f"SELECT filename FROM {schema}.schema_migrations ORDER BY 1")]
    assert recorded == ACCOUNT_FILES  # 004 (bling_bi on public) is not recorded as applied where it never ran
    assert database().fetch_all(f"SELECT count(*) FROM {schema}.nfe_situacao WHERE conta_como_receita")[0][0] == 2
    assert database().fetch_all("SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", (reader_role_for(account),)) \
        == [[False]]
    assert migrate.account_schemas(database()) == [schema]
    assert not migrate.public_holds_install(database())


def test_store_layer_writes_each_account_into_its_own_schema_per_transaction(account_db):
    a, b = account_db.account("alfa"), account_db.account("beta")
    migrate.ensure_account_schema(database(), a)
    migrate.ensure_account_schema(database(), b)
    migrate.apply_all(database())  # an un-adopted install in public too: it must never receive an account's rows

    with database().transaction(schema=schema_for(a)) as cur:
        nfe_store.upsert_nfe(cur, _nfe(1), "America/Sao_Paulo", "run-a")
        nfe_store.upsert_nfe(cur, _nfe(2), "America/Sao_Paulo", "run-a")
    with database().transaction(schema=schema_for(b)) as cur:  # the same connection, another account
        nfe_store.upsert_nfe(cur, _nfe(1, situacao=2, codigo="SKU-B"), "America/Sao_Paulo", "run-b")

    assert database().fetch_all("SELECT id FROM nfe ORDER BY id", schema=schema_for(a)) == [[1], [2]]
    assert database().fetch_all("SELECT id, situacao FROM nfe", schema=schema_for(b)) == [[1, 2]]
    assert database().fetch_all("SELECT codigo FROM nfe_item", schema=schema_for(b)) == [["SKU-B"]]
    # search_path was transaction-local: the next transaction without a schema is back on public.
    assert database().fetch_all("SELECT count(*) FROM nfe") == [[0]]
    assert database().fetch_all("SELECT current_schemas(false)") == [[["public"]]]
    assert database().fetch_all(f"SELECT count(*) FROM {schema_for(a)}.nfe_item")[0][0] == 2


def test_a_schema_with_no_table_is_an_error_not_a_fallback_to_public(account_db):
    migrate.apply_all(database())  # public holds nfe
    database().execute("CREATE SCHEMA bling_empty")

    with pytest.raises(pg8000.dbapi.DatabaseError) as info:
        database().fetch_all("SELECT count(*) FROM nfe", schema="bling_empty")
    assert db.sqlstate(info.value) == "42P01"  # undefined_table
    for bad in ("bling_a, public", "bling_a;drop", "Bling_A", "bling_a\n"):
        with pytest.raises(ValueError, match="schema name"):
            database().fetch_all("SELECT 1", schema=bad)


def test_python_m_shared_migrate_migrates_every_account_schema_and_leaves_public_alone(account_db, tmp_path, capsys):
    a, b = account_db.account("alfa"), account_db.account("beta")
    migrate.ensure_account_schema(database(), a)
    migrate.ensure_account_schema(database(), b)
    database().execute("CREATE SCHEMA bling_x_not_an_account")  # bling_ but no schema_migrations: not an account
    env = {k: v for k, v in os.environ.items() if k != "CLOUD_SQL_INSTANCE"}
    env.update(account_db.env)

    result = subprocess.run([sys.executable, "-m", "shared.migrate"], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=120)

    assert result.returncode == 0, result.stdout + result.stderr
    assert '"applied_count": 0' in result.stdout
    assert '"schemas": ["' + schema_for(a) + '", "' + schema_for(b) + '"]' in result.stdout
    assert _relations("public") == set()

    # A new migration reaches every account schema, and only them.
    new = tmp_path / "migrations"
    new.mkdir()
    for path in migrate.migration_files():
        (new / path.name).write_bytes(path.read_bytes())
    (new / "900_tabela_nova.sql").write_text("CREATE TABLE tabela_nova (id bigint PRIMARY KEY);\n")
    assert migrate.migrate_all(database(), new) == {schema_for(a): ["900_tabela_nova.sql"],
                                                    schema_for(b): ["900_tabela_nova.sql"]}
    assert "tabela_nova" in _relations(schema_for(b))
    assert _relations("public") == set()
    capsys.readouterr()
    assert accounts_db.main(["list"]) == 0
    assert capsys.readouterr().out.split() == [schema_for(a), schema_for(b)]


def test_a_new_database_is_still_migrated_in_public(account_db):
    """No account yet: today's single-account commands (and the local stack) keep their public tables."""
    assert migrate.migrate_all(database()) == {"public": ALL_FILES}
    assert migrate.migrate_all(database()) == {"public": []}
    assert migrate.public_holds_install(database())
    assert "nfe" in _relations("public")


@pytest.mark.parametrize("account_db", [False], indirect=True)
def test_a_user_that_may_not_create_roles_gets_the_schema_and_a_warning(account_db, capsys):
    account = account_db.account("local")

    assert migrate.ensure_account_schema(database(), account) == ACCOUNT_FILES

    assert "nfe" in _relations(schema_for(account))
    assert "reader role not created" in capsys.readouterr().out
    assert database().fetch_all("SELECT count(*) FROM pg_roles WHERE rolname = %s",
                                (reader_role_for(account),)) == [[0]]
    with pytest.raises(SystemExit, match="does not exist"):
        accounts_db.grant_reader(database(), account, "a-password-of-enough-length")


def test_apply_all_refuses_a_schema_that_does_not_exist(account_db):
    with pytest.raises(SystemExit, match="does not exist"):
        migrate.apply_all(database(), "bling_nobody")
