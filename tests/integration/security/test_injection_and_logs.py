"""Hostile text from Bling and in messages is stored as text (every statement is parameterized), and no secret
reaches a log line. In-process over the real emulators, PostgreSQL and the sandbox.

The end-to-end variant of the log check (every log the LocalStack wrote during all chaos scenarios, with token
refreshes, revocation and re-authorization) is tests/chaos/test_chaos.py::test_no_secret_in_any_log_of_the_whole_
chaos_run. That only the auth function is public in infra/ is checked by
tests/integration/infra/test_terraform_matches_code.py
(test_only_the_http_functions_are_public, test_no_iam_grant_makes_a_function_other_than_auth_public) and the
policy infra/policies/function_not_public_except_auth.yaml; it is not repeated here.
"""
from __future__ import annotations

from local import verify
from local.sandbox.dataset import NASTY_NAME
from tests.chaos.reliability import record
from tests.integration.badinput.helpers import errors, log_lines
from tests.integration.bling.helpers import token_doc
from tests.integration.data.pipeline_driver import Pipeline, envelope, handler, rows

MONTHS = ("2026-01", "2026-02")
HOSTILE_SKU = "X'); DROP TABLE nfe_item;--"
HOSTILE_RUN = "r'); DROP TABLE etl_run;--"


def test_hostile_names_load_as_text_the_tables_survive_and_no_secret_is_logged(
        bling, postgres, pubsub_topology, capsys):
    nasty = [c for c, v in bling.app.dataset.contacts.items() if v.get("nome") == NASTY_NAME]
    assert nasty, "the sandbox dataset no longer has its hostile contact name"
    target = next(i for i, n in sorted(bling.app.dataset.nfe.items()) if n["tipo"] == 1 and n["itens"]
                  and n["dataEmissao"][:7] == "2026-02")
    with bling.app.lock:
        bling.app.dataset.nfe[target]["itens"][0]["codigo"] = HOSTILE_SKU
    capsys.readouterr()

    Pipeline(pubsub_topology).run({"start": "2026-01-01", "end": "2026-02-28"})
    handler("lister")(envelope({"run_id": HOSTILE_RUN, "start": "2026-01-01", "end": "2026-01-31"}))
    Pipeline(pubsub_topology).drain()

    out = capsys.readouterr().out
    tables = {r[0] for r in rows(postgres, "SELECT table_name FROM information_schema.tables "
                                            "WHERE table_schema = current_schema()")}  # the account's
    assert {"nfe", "nfe_item", "etl_run", "contato"} <= tables
    conn = postgres.connect()
    try:
        report = verify.verify(conn, verify.normalize_truth(bling.truth()), MONTHS)
        assert report.ok, report.summary()
        assert verify.duplicate_report(conn) == []
    finally:
        conn.close()
    assert rows(postgres, "SELECT nome FROM contato WHERE id = ANY(%s)", (nasty,)) == [(NASTY_NAME,)] * len(nasty)
    assert (NASTY_NAME,) in rows(postgres, "SELECT DISTINCT contato_nome FROM nfe")
    assert rows(postgres, "SELECT codigo FROM nfe_item WHERE nfe_id = %s AND linha = 1", (target,)) == \
        [(HOSTILE_SKU,)]
    assert rows(postgres, "SELECT codigo FROM produto_sku WHERE codigo = %s", (HOSTILE_SKU,)) == [(HOSTILE_SKU,)]
    assert rows(postgres, "SELECT run_id FROM etl_run WHERE run_id = %s", (HOSTILE_RUN,)) == [(HOSTILE_RUN,)]
    assert errors(log_lines(out)) == []

    doc = token_doc()  # decrypted: a leak would show the plain tokens (ADR 008)
    secrets = {"access token": doc["access_token"], "refresh token": doc["refresh_token"],
               "client secret": bling.client_secret, "DB password": postgres.password}
    leaked = [name for name, value in secrets.items() if value and value in out]
    assert leaked == []
    record("SQL injection through a name",
           fault=f"contact {NASTY_NAME!r} (sandbox dataset), SKU {HOSTILE_SKU!r}, window run_id {HOSTILE_RUN!r}; "
                 "two months through every handler",
           outcome=f"all three stored verbatim as text, every table present, DB = truth "
                   f"({report.counts['nfe']} NF-e), 0 ERROR; no token, client secret or DB password in "
                   f"{len(out) // 1024} kB of log output", ok=True)
