"""python -m shared.ops.accounts against the Firestore emulator and a PostgreSQL database of its own per test
(tests/integration/accounts/conftest.py): connect, list, pause, resume, remove, adopt, grant-reader."""
from __future__ import annotations

import datetime
import io
import json
import os
import uuid

import pytest

from shared import migrate, parking, topology
from shared.account_registry import AccountStatus
from shared.accounts import reader_role_for, schema_for
from shared.bling import token_crypto
from shared.messages import PubSubMessage
from shared.ops import accounts
from tests.integration.process_deps import current_deps, database, parked_collection

AUTH_URL = "https://southamerica-east1-p.cloudfunctions.net/bling-auth"


@pytest.fixture
def env(account_db, firestore_env):
    os.environ.update({"AUTH_PUBLIC_URL": AUTH_URL, "BLING_TOKEN_KEY": token_crypto.new_key()})
    return account_db


def _status(account: str) -> AccountStatus | None:
    record = current_deps().accounts.get(account, fresh=True)
    return record.status if record else None


def _pair(n: int = 1) -> dict[str, object]:
    return {"access_token": f"access-{n}-" + uuid.uuid4().hex, "refresh_token": f"refresh-{n}-" + uuid.uuid4().hex,
            "expires_in": 21600, "token_type": "Bearer", "scope": "nfe"}


def _tables(schema: str) -> set[str]:
    return {r[0] for r in database().fetch_all("SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,))}


def test_connect_registers_the_account_pending_creates_its_schema_and_prints_the_start_url(env, capsys):
    account = env.account("lojas")

    assert accounts.main(["connect", account]) == 0
    assert accounts.main(["connect", account]) == 0  # idempotent

    out = capsys.readouterr().out
    assert f"{AUTH_URL}/start?account={account}" in out
    assert _status(account) is AccountStatus.PENDING
    assert {"nfe", "etl_run", "schema_migrations"} <= _tables(schema_for(account))
    assert database().fetch_all("SELECT count(*) FROM pg_roles WHERE rolname = %s",
                                (reader_role_for(account),)) == [[1]]


def test_a_bad_slug_is_refused_before_anything_is_written(env, capsys):
    with pytest.raises(SystemExit):
        accounts.main(["connect", "Lojas_Stilli"])
    assert "not a slug" in capsys.readouterr().err
    assert current_deps().accounts.all(fresh=True) == {}
    assert migrate.account_schemas(database()) == []


def test_list_shows_every_account_with_its_authorization_and_parked_work(env, capsys):
    a, b = env.account("alfa"), env.account("beta")
    for account in (a, b):
        accounts.main(["connect", account])
    current_deps().account(a).token_store.store_authorization(_pair())
    current_deps().accounts.mark_authorized(a)
    for n in range(2):
        parking.park(parked_collection(), topology.NFE.topic,
                     PubSubMessage(data=b"{}", attributes={"account": a}, message_id=f"m-{n}"), reason="X")
    capsys.readouterr()

    assert accounts.main(["list"]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[1:3]}
    assert rows[a][1:3] == ["active", "yes"] and rows[a][-1] == "2"
    assert rows[b][1] == "pending" and rows[b][-1] == "0"

    assert accounts.main(["list", "--json"]) == 0
    listed = {e["account"]: e for e in json.loads(capsys.readouterr().out)}
    assert listed[a]["authorized"] is True and listed[a]["parked"] == 2
    assert listed[b]["reauthorize_url"] == f"{AUTH_URL}/start?account={b}"


def test_pause_resume_and_remove_change_only_the_status_and_keep_the_data(env, capsys):
    account = env.account("lojas")
    accounts.main(["connect", account])
    with pytest.raises(SystemExit, match="never authorized"):
        accounts.main(["resume", account])  # pending: it must be authorized first
    current_deps().accounts.mark_authorized(account)
    database().execute("INSERT INTO nfe (id, tipo, situacao, raw) VALUES (1, 1, 5, '{}')", schema=schema_for(account))

    assert accounts.main(["pause", account, "--reason", "client on holiday"]) == 0
    record = current_deps().accounts.get(account, fresh=True)
    assert record.status is AccountStatus.PAUSED and record.status_reason == "client on holiday"
    assert accounts.main(["resume", account]) == 0
    assert _status(account) is AccountStatus.ACTIVE
    capsys.readouterr()

    assert accounts.main(["remove", account]) == 0

    out = capsys.readouterr().out
    assert _status(account) is AccountStatus.REMOVED
    assert f"DROP SCHEMA {schema_for(account)} CASCADE;" in out
    assert f"DROP ROLE IF EXISTS {reader_role_for(account)};" in out
    assert database().fetch_all("SELECT count(*) FROM nfe", schema=schema_for(account)) == [[1]]  # printed, never run
    assert database().fetch_all("SELECT count(*) FROM pg_roles WHERE rolname = %s",
                                (reader_role_for(account),)) == [[1]]
    with pytest.raises(SystemExit, match="not connected"):
        accounts.main(["pause", env.account("nobody")])


def test_grant_reader_gives_the_accounts_role_a_login_that_reads_its_schema(env, capsys):
    account = env.account("lojas")
    accounts.main(["connect", account])
    password = "reader-" + uuid.uuid4().hex

    assert accounts.main(["grant-reader", account, "--password-stdin"], stdin=io.StringIO(password + "\n")) == 0

    out = capsys.readouterr().out
    assert password not in out and f"user={reader_role_for(account)}" in out
    conn = env.connect(user=reader_role_for(account), password=password)
    try:
        cur = conn.cursor()
        cur.execute("SELECT count(*) FROM nfe")  # its search_path is its own schema
        assert cur.fetchone()[0] == 0
    finally:
        conn.close()


def test_adopt_makes_the_single_account_install_the_first_account_once(env, capsys):
    from shared.bling import token_store

    migrate.apply_all(database())  # today's install: tables in public, the token in <prefix>_oauth/bling
    database().execute("INSERT INTO nfe (id, tipo, situacao, raw) VALUES (7, 1, 5, '{}')")
    pair = _pair()
    current_deps().account(token_store.LEGACY_DOC_ID).token_store.store_authorization(pair)
    account = env.account("lojas")

    assert accounts.main(["adopt", account]) == 0
    assert "active" in capsys.readouterr().out
    assert accounts.main(["adopt", account]) == 0  # idempotent
    assert "(0 moved now), token already moved" in capsys.readouterr().out

    assert _status(account) is AccountStatus.ACTIVE
    assert database().fetch_all("SELECT id FROM nfe", schema=schema_for(account)) == [[7]]
    assert not migrate.public_holds_install(database())
    assert current_deps().account(account).token_store.status()["token_stored"] is True
    assert not current_deps().collection(topology.OAUTH).document(token_store.LEGACY_DOC_ID).get().exists


def test_adopt_is_refused_when_another_account_exists_and_changes_nothing(env):
    migrate.apply_all(database())
    current_deps().accounts.register(env.account("outra"))

    with pytest.raises(SystemExit, match="already has accounts"):
        accounts.main(["adopt", env.account("lojas")])

    assert migrate.public_holds_install(database()) and migrate.account_schemas(database()) == []
    assert sorted(current_deps().accounts.all(fresh=True)) == [env.account("outra")]


def test_reconcile_compares_each_active_account_with_its_own_schema(env, sandbox, monkeypatch, capsys):
    """Default: every active account; --account: one. A's invoice in A's schema is not B's (nor public's)."""
    from shared.messages import Window
    from shared.ops import reconcile

    monkeypatch.setenv("BLING_RATE_BUDGET_PER_S", "50")
    server = sandbox("small", rate_per_s=100)
    a, b, paused = env.account("alfa"), env.account("beta"), env.account("parada")
    for account in (a, b, paused):
        accounts.main(["connect", account])
        current_deps().account(account).token_store.store_authorization(server.issue_tokens())
        current_deps().accounts.mark_authorized(account)
    current_deps().accounts.set_status(paused, AccountStatus.PAUSED)
    window = Window("r", datetime.date(2026, 1, 1), datetime.date(2026, 1, 31))
    listed = reconcile.bling_ids(current_deps(), current_deps().account(a), window)
    nfe_id, situacao = sorted(listed.items())[0]
    database().execute("INSERT INTO nfe (id, tipo, situacao, data_emissao, raw) VALUES (%s, 1, %s, '2026-01-15', '{}')",
               (nfe_id, situacao), schema=schema_for(a))
    capsys.readouterr()

    assert reconcile.main(["--month", "2026-01", "--json"]) == 1
    reports = {r["account"]: r for r in _report(capsys.readouterr().out)}

    assert sorted(reports) == [a, b]  # the paused account is not reconciled
    assert reports[a]["stored"] == 1 and nfe_id not in reports[a]["missing"]
    assert reports[b]["stored"] == 0 and nfe_id in reports[b]["missing"]
    assert reports[a]["listed"] == reports[b]["listed"] == len(listed)
    assert reconcile.main(["--month", "2026-01", "--json", "--account", b]) == 1
    assert [r["account"] for r in _report(capsys.readouterr().out)] == [b]
    assert reconcile.main(["--month", "2026-01", "--account", env.account("nobody")]) == 2  # not a gap: refused
    assert "not connected" in capsys.readouterr().err


def _report(out: str) -> list[dict]:
    """The JSON report reconcile prints after its log lines."""
    return json.loads(out[out.index("\n[") + 1:] if not out.startswith("[") else out)
