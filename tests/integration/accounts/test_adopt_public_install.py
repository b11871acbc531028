"""The database half of issue 14's upgrade path: a single-account install (its tables in public, with data)
becomes the first account's schema in place: every row kept, nothing left in public, later migrations reach it,
the store layer works in it, and the legacy bling_bi login reads it (and only it)."""
from __future__ import annotations

import datetime
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pg8000.dbapi
import pytest

from shared import audit, db, migrate, nfe_store
from shared.accounts import reader_role_for, schema_for
from shared.db import SchemaDb
from shared.ops import accounts_db
from tests.integration.process_deps import database

REPO = Path(__file__).resolve().parents[3]
TABLES = ("nfe", "nfe_item", "nfe_parcela", "forma_pagamento", "contato", "produto", "produto_sku", "nfe_situacao",
          "etl_run", "etl_window", "etl_window_nfe", "etl_message_failures", "schema_migrations")


def _load_single_account_install() -> dict[str, int]:
    """Today's layout: the migrations in public, then a little of everything the pipeline writes."""
    migrate.apply_all(database())
    with database().transaction() as cur:
        cur.execute("INSERT INTO forma_pagamento (id, descricao) VALUES (3, 'Pix')")
        for nfe_id in (11, 12, 13):
            cur.execute("""INSERT INTO nfe (id, tipo, situacao, numero, contato_id, valor_nota, raw)
                           VALUES (%s, 1, %s, %s, 70, 10, '{}')""", (nfe_id, 5 if nfe_id != 13 else 2, str(nfe_id)))
            cur.execute("INSERT INTO nfe_item (nfe_id, linha, codigo, quantidade) VALUES (%s, 1, 'SKU-1', 1), "
                        "(%s, 2, 'SKU-1', 2)", (nfe_id, nfe_id))
            cur.execute("INSERT INTO nfe_parcela (nfe_id, linha, valor, forma_pagamento_id) VALUES (%s, 1, 10, 3)",
                        (nfe_id,))
        cur.execute("INSERT INTO contato (id, nome) VALUES (70, 'Cliente')")
        cur.execute("INSERT INTO produto (id, codigo, raw) VALUES (5, 'SKU-1', '{}')")
        cur.execute("INSERT INTO produto_sku (codigo, produto_id, encontrado) VALUES ('SKU-1', 5, true)")
        cur.execute("INSERT INTO etl_message_failures (topic, message_id, falhas) VALUES ('detail', 'm-1', 2)")
    window = _window("run-1")
    public = SchemaDb(database(), "public")  # the single-account layout before the upgrade
    audit.record_run(public, "run-1", "month", {"month": "2024-03"}, window.start, window.end, [window])
    audit.record_listed(public, window, [nfe_store_ref(11), nfe_store_ref(12)])
    return {t: database().fetch_all(f"SELECT count(*) FROM {t}")[0][0] for t in TABLES}


def _window(run_id: str):
    from shared.messages import Window

    return Window(run_id, datetime.date(2024, 3, 1), datetime.date(2024, 3, 31))


def nfe_store_ref(nfe_id: int):
    from shared.messages import NoteRef

    return NoteRef(nfe_id, 5)


def _relations_in(schema: str) -> list[str]:
    return [r[0] for r in database().fetch_all("""SELECT c.relname FROM pg_class c JOIN pg_namespace n
                                             ON n.oid = c.relnamespace WHERE n.nspname = %s ORDER BY 1""", (schema,))]


def test_adopt_moves_every_row_into_the_account_schema_once(account_db, capsys):
    before = _load_single_account_install()
    # No migration makes sequences yet; one a column owns and one of its own must move too.
    database().execute("CREATE TABLE contador (id serial PRIMARY KEY, nome text)")
    database().execute("INSERT INTO contador (nome) VALUES ('a'), ('b')")
    database().execute("CREATE SEQUENCE sequencia_livre START 40")
    account = account_db.account("lojas")
    schema = schema_for(account)

    assert accounts_db.main(["adopt", account]) == 0

    assert "public install adopted" in capsys.readouterr().out
    assert _relations_in("public") == []  # tables, their indexes, views: nothing left
    after = {t: database().fetch_all(f"SELECT count(*) FROM {schema}.{t}")[0][0] for t in TABLES}
    assert after == before and after["nfe"] == 3 and after["etl_window_nfe"] == 2
    # The view followed.
    assert database().fetch_all(f"SELECT id FROM {schema}.nfe_autorizada ORDER BY id") == [[11], [12]]
    assert database().fetch_all(f"SELECT listadas FROM {schema}.etl_window_resumo") == [[2]]
    assert {r[0] for r in database().fetch_all("SELECT indexname FROM pg_indexes WHERE schemaname = %s", (schema,))} \
        >= {"nfe_pkey", "nfe_data_emissao_idx", "nfe_item_codigo_idx"}
    with pytest.raises(pg8000.dbapi.DatabaseError) as info:  # the foreign keys came along
        database().execute("INSERT INTO nfe_item (nfe_id, linha) VALUES (999, 1)", schema=schema)
    assert db.sqlstate(info.value) == "23503"  # foreign_key_violation: an item of no invoice is still refused
    assert migrate.account_schemas(database()) == [schema] and not migrate.public_holds_install(database())
    database().execute("INSERT INTO contador (nome) VALUES ('c')", schema=schema)
    assert database().fetch_all("SELECT id FROM contador ORDER BY id", schema=schema) == [[1], [2], [3]]
    assert database().fetch_all("SELECT nextval('sequencia_livre')", schema=schema) == [[40]]

    # A second run changes nothing and says so.
    assert accounts_db.main(["adopt", account]) == 0
    assert "already adopted: nothing to do" in capsys.readouterr().out
    assert accounts_db.adopt_public_schema(database(), account).already_adopted
    assert {t: database().fetch_all(f"SELECT count(*) FROM {schema}.{t}")[0][0] for t in TABLES} == before


def test_after_adopt_migrate_applies_only_new_files_to_the_account_and_the_store_layer_works(account_db, tmp_path):
    _load_single_account_install()
    account = account_db.account("lojas")
    schema = schema_for(account)
    accounts_db.adopt_public_schema(database(), account)
    env = {k: v for k, v in os.environ.items() if k != "CLOUD_SQL_INSTANCE"}
    env.update(account_db.env)

    result = subprocess.run([sys.executable, "-m", "shared.migrate"], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert '"applied_count": 0' in result.stdout and f'"schemas": ["{schema}"]' in result.stdout
    assert _relations_in("public") == []  # public is not recreated once adopted

    new = tmp_path / "migrations"
    new.mkdir()
    for path in migrate.migration_files():
        (new / path.name).write_bytes(path.read_bytes())
    (new / "900_coluna_nova.sql").write_text("ALTER TABLE nfe ADD COLUMN coluna_nova text;\n")
    # Its checksums held: 001-005 not rerun.
    assert migrate.migrate_all(database(), new) == {schema: ["900_coluna_nova.sql"]}

    with database().transaction(schema=schema) as cur:
        stored = nfe_store.upsert_nfe(cur, {"id": 14, "tipo": 1, "situacao": 5, "numero": "14",
                                            "itens": [{"codigo": "SKU-1", "quantidade": 3}]},
                                      "America/Sao_Paulo", "run-2")
        audit.record_outcome(cur, "run-1", _window("run-1").key, 11, "unchanged", 0)
    assert stored.outcome is not None
    assert database().fetch_all("SELECT count(*) FROM nfe", schema=schema) == [[4]]
    assert database().fetch_all("SELECT resultado FROM etl_window_nfe WHERE nfe_id = 11",
                                schema=schema) == [["unchanged"]]
    assert database().fetch_all("SELECT count(*) FROM nfe_item WHERE nfe_id = 14", schema=schema) == [[1]]


def test_the_legacy_bi_login_reads_the_adopted_account_and_no_other(account_db):
    _load_single_account_install()  # migration 004 gave bling_bi SELECT on public
    first, second = account_db.account("lojas"), account_db.account("outra")
    accounts_db.adopt_public_schema(database(), first)
    migrate.ensure_account_schema(database(), second)
    database().execute("INSERT INTO nfe (id, tipo, situacao, raw) VALUES (1, 1, 5, '{}')", schema=schema_for(second))
    password = "bi-" + uuid.uuid4().hex
    accounts_db.set_login_password(database(), "bling_bi", password)

    conn = account_db.connect(user="bling_bi", password=password)
    try:
        cur = conn.cursor()
        cur.execute("SELECT id FROM nfe ORDER BY id")  # the dashboards' unqualified names: the first account
        assert list(cur.fetchall()) == [[11], [12], [13]]
        conn.rollback()
        with pytest.raises(pg8000.dbapi.DatabaseError) as info:
            cur.execute(f"SELECT * FROM {schema_for(second)}.nfe")
        assert db.sqlstate(info.value) == "42501"
    finally:
        conn.close()
    # Its access is the reader role's, not grants of its own that came along with the tables.
    assert database().fetch_all("SELECT count(*) FROM information_schema.role_table_grants "
                           "WHERE grantee = 'bling_bi' AND table_schema = %s", (schema_for(first),)) == [[0]]
    assert database().fetch_all("SELECT pg_has_role('bling_bi', %s, 'USAGE')", (reader_role_for(first),)) == [[True]]


def test_adopt_refuses_a_target_that_already_holds_tables_and_keeps_public(account_db):
    before = _load_single_account_install()
    account = account_db.account("lojas")
    migrate.ensure_account_schema(database(), account)

    with pytest.raises(SystemExit, match=r"already holds .* refusing to merge"):
        accounts_db.adopt_public_schema(database(), account)

    assert {t: database().fetch_all(f"SELECT count(*) FROM {t}")[0][0] for t in TABLES} == before
    assert database().fetch_all(f"SELECT count(*) FROM {schema_for(account)}.nfe") == [[0]]


def test_adopt_refuses_when_there_is_nothing_to_adopt(account_db):
    with pytest.raises(SystemExit, match="nothing to adopt"):
        accounts_db.adopt_public_schema(database(), account_db.account("lojas"))
    assert _relations_in("public") == []


def test_adopt_is_one_transaction(account_db):
    """A relation adopt cannot move (owned by someone else) rolls the whole move back: public keeps everything."""
    before = _load_single_account_install()
    account_db.as_superuser("CREATE TABLE public.zz_not_ours (x int)")  # sorts last: moved after all of ours

    with pytest.raises(pg8000.dbapi.DatabaseError) as info:
        accounts_db.adopt_public_schema(database(), account_db.account("lojas"))

    assert db.sqlstate(info.value) == "42501"  # must be owner of table zz_not_ours
    assert {t: database().fetch_all(f"SELECT count(*) FROM {t}")[0][0] for t in TABLES} == before
    assert _relations_in(schema_for(account_db.account("lojas"))) == []
