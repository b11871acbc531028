"""Does PostgreSQL hold exactly what the Bling sandbox's truth says, for the given months?

Written independently of the pipeline's own mapping code (it does not import shared.*), against the truth dict of
`GET /__admin/truth` and the schema in migrations/. Checked:
  nfe          exactly the outgoing (tipo 1) NF-e issued in the months, cancelled ones included, no incoming ones,
               no others; header fields (situacao, numero, serie, chave, contato, amounts, emission date)
  nfe_item     line by line in Bling's order, exact Decimal quantities and values
  nfe_parcela  line by line (date, value, forma_pagamento_id), and each forma_pagamento row present and right
  contato      every contact the NF-e reference (encontrado=false exactly for ids Bling does not know)
  produto_sku  every SKU of the items: resolved to the product whose codigo is exactly that SKU, or recorded as
               unknown (encontrado=false) when no product has it; produto rows right
Text comparisons treat '' and NULL as the same (an empty Bling field may be stored as NULL).

Several accounts (docs/decisions/011): every function that reads the database takes `schema=`, the account's
PostgreSQL schema (`bling_<slug with _>`); None reads whatever the connection's search_path finds (today's
`public`). The truth of one account comes from `fetch_truth(url, account=...)`; `foreign_rows` says whether a
schema holds rows of another account's truth (the sandbox gives every account its own id range).

    python -m local.verify --truth-url http://127.0.0.1:PORT --months 2026-01 2026-02   (DB_* from the env)
    python -m local.verify --truth-url ... --account loja-b --schema bling_loja_b --months 2026-01
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import decimal
import json
import os
import re
import sys
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from local.stack import LocalStack

D = decimal.Decimal
TIMEZONE = "America/Sao_Paulo"
Row = tuple[Any, ...]


class Cursor(Protocol):
    description: Any

    def execute(self, sql: str, params: tuple[Any, ...] = ...) -> Any: ...
    def fetchall(self) -> Any: ...
    def fetchone(self) -> Any: ...


class Connection(Protocol):
    """What the checks need of a DB-API connection (pg8000's)."""

    def cursor(self) -> Cursor: ...
    def rollback(self) -> None: ...
    def close(self) -> None: ...


TABLES = ("nfe", "nfe_item", "nfe_parcela", "forma_pagamento", "contato", "produto", "produto_sku")
# A schema name the checks accept: a plain lowercase identifier (what shared.accounts.schema_for makes, and
# `public`). It travels as a bind parameter anyway; the pattern turns a typo into a clear error instead of a
# search_path that silently finds nothing (or finds a second schema after a comma).
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


# ------------------------------------------------------------------------------------------------ truth

def fetch_truth(sandbox_url: str, timeout_s: float = 60, account: str | None = None) -> dict[str, Any]:
    """GET <sandbox>/__admin/truth (with `account`: /__admin/accounts/<account>/truth, that company's) with exact
    decimals and int keys."""
    path = "/__admin/truth" if account is None else f"/__admin/accounts/{urllib.parse.quote(account, safe='')}/truth"
    with urllib.request.urlopen(sandbox_url.rstrip("/") + path, timeout=timeout_s) as response:
        return normalize_truth(json.loads(response.read(), parse_float=D))


def normalize_truth(truth: dict[str, Any]) -> dict[str, Any]:
    """JSON object keys are strings; the id-keyed maps get int keys back."""
    out = dict(truth)
    for key in ("nfe", "contacts", "products", "payment_forms", "product_meta"):
        if isinstance(out.get(key), dict):
            out[key] = {int(k): v for k, v in out[key].items()}
    return out


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    text = str(value)
    return text if text != "" else None


def _dec(value: Any) -> D | None:
    if value is None or isinstance(value, bool):
        return None
    return D(str(value)) if not isinstance(value, D) else value


def _id(value: Any) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def _get(obj: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


@dataclasses.dataclass
class Expected:
    months: list[str]
    nfe: dict[int, dict[str, Any]]
    incoming_ids: set[int]
    contact_ids: set[int]
    skus: set[str]
    sku_to_products: dict[str, list[int]]  # SKU -> ids of products whose codigo is exactly the SKU
    payment_form_ids: set[int]

    @property
    def item_lines(self) -> int:
        return sum(len(n.get("itens") or []) for n in self.nfe.values())

    @property
    def parcelas(self) -> int:
        return sum(len(n.get("parcelas") or []) for n in self.nfe.values())

    @property
    def known_skus(self) -> set[str]:
        return {s for s in self.skus if self.sku_to_products.get(s)}


def expected_from_truth(truth: dict[str, Any], months: Iterable[str]) -> Expected:
    months = sorted(set(months))
    in_months = {i: n for i, n in truth["nfe"].items() if str(n.get("dataEmissao", ""))[:7] in months}
    outgoing = {i: n for i, n in in_months.items() if n.get("tipo") == 1}
    incoming = {i for i, n in truth["nfe"].items() if n.get("tipo") != 1}
    contact_ids = {cid for n in outgoing.values() if (cid := _id(_get(n, "contato", "id")))}
    skus = {str(it["codigo"]) for n in outgoing.values() for it in n.get("itens") or []
            if it.get("codigo") not in (None, "") and str(it["codigo"]).strip()}
    by_code: dict[str, list[int]] = {}
    for pid, product in truth["products"].items():
        by_code.setdefault(str(product.get("codigo")), []).append(pid)
    forms = {fid for n in outgoing.values() for p in n.get("parcelas") or []
             if (fid := _id(_get(p, "formaPagamento", "id")))}
    return Expected(months=months, nfe=outgoing, incoming_ids=incoming, contact_ids=contact_ids, skus=skus,
                    sku_to_products={s: sorted(by_code.get(s, [])) for s in skus}, payment_form_ids=forms)


# ------------------------------------------------------------------------------------------------ database

def connect_from_env() -> Connection:
    import pg8000.dbapi

    conn: Connection = pg8000.dbapi.connect(host=os.environ.get("DB_HOST", "127.0.0.1"),
                                            port=int(os.environ.get("DB_PORT", "5432")),
                                            database=os.environ.get("DB_NAME", "bling"),
                                            user=os.environ.get("DB_USER", "bling_etl"),
                                            password=os.environ.get("DB_PASSWORD") or None, timeout=30)
    return conn


def checked_schema(schema: str) -> str:
    if not isinstance(schema, str) or _SCHEMA_NAME.fullmatch(schema) is None:
        raise ValueError(f"{schema!r} is not a schema name (a lowercase identifier such as bling_loja_a)")
    return schema


class _SchemaCursor:
    """A cursor whose every statement runs with search_path = one schema. Transaction-local (set_config(..., true))
    and set again before each statement, because _rows ends every read with a rollback, which would undo a
    session-level setting made inside it anyway; the path is that schema alone (no public fallback), so a missing
    table is an error, not a read of another schema's table."""

    def __init__(self, cursor: Cursor, schema: str):
        self._cursor, self._schema = cursor, schema
        self.description: Any = None

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        self._cursor.execute("SELECT set_config('search_path', %s, true)", (self._schema,))
        result = self._cursor.execute(sql, params)
        self.description = self._cursor.description
        return result

    def fetchall(self) -> Any:
        return self._cursor.fetchall()

    def fetchone(self) -> Any:
        return self._cursor.fetchone()


class _SchemaConnection:
    def __init__(self, conn: Connection, schema: str):
        self._conn, self._schema = conn, schema

    def cursor(self) -> Cursor:
        return _SchemaCursor(self._conn.cursor(), self._schema)

    def rollback(self) -> None:
        self._conn.rollback()

    def close(self) -> None:
        self._conn.close()


def in_schema(conn: Connection, schema: str | None) -> Connection:
    """`conn` reading the tables of `schema` (None: `conn` itself, today's behaviour)."""
    if schema is None or isinstance(conn, _SchemaConnection):
        return conn
    return _SchemaConnection(conn, checked_schema(schema))


def _rows(conn: Connection, sql: str, params: tuple[Any, ...] = ()) -> list[Row]:
    try:
        cur = conn.cursor()
        cur.execute(sql, params)
        return list(cur.fetchall()) if cur.description else []
    finally:
        conn.rollback()  # read-only; never leave a transaction open (nor an aborted one after an error)


def db_counts(conn: Connection, schema: str | None = None) -> dict[str, int]:
    conn = in_schema(conn, schema)
    return {t: _rows(conn, f"SELECT count(*) FROM {t}")[0][0] for t in TABLES}


def schema_tables(conn: Connection, schema: str = "public") -> set[str]:
    """The names of the tables in `schema` (empty when it does not exist)."""
    return {r[0] for r in _rows(conn, "SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
                                      "AND table_type = 'BASE TABLE'", (checked_schema(schema),))}


def progress(conn: Connection, schema: str | None = None) -> dict[str, Any]:
    """Counts plus the audit state: used to decide that the pipeline has settled."""
    conn = in_schema(conn, schema)
    out: dict[str, Any] = dict(db_counts(conn))
    try:
        out["windows_by_status"] = dict(_rows(conn, "SELECT status, count(*) FROM etl_window GROUP BY status"))
        out["window_nfe_by_result"] = dict(_rows(conn, "SELECT resultado, count(*) FROM etl_window_nfe "
                                                       "GROUP BY resultado"))
    except Exception:  # noqa: BLE001 - the audit tables are optional for this purpose
        conn.rollback()
    return out


# ------------------------------------------------------------------------------------------------ checks

@dataclasses.dataclass
class Report:
    months: list[str]
    problems: list[str] = dataclasses.field(default_factory=list)
    counts: dict[str, int] = dataclasses.field(default_factory=dict)
    expected_counts: dict[str, int] = dataclasses.field(default_factory=dict)
    max_problems: int = 200
    schema: str | None = None
    _dropped: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, message: str) -> None:
        if len(self.problems) < self.max_problems:
            self.problems.append(message)
        else:
            self._dropped += 1

    def summary(self) -> str:
        where = f" (schema {self.schema})" if self.schema else ""
        if self.ok:
            return f"OK: the database{where} equals the sandbox truth for {', '.join(self.months)}"
        more = f"\n  ... and {self._dropped} more" if self._dropped else ""
        return (f"MISMATCH{where}: {len(self.problems) + self._dropped} problem(s) for {', '.join(self.months)}:\n  "
                + "\n  ".join(self.problems) + more)


def _same_text(a: Any, b: Any) -> bool:
    return _text(a) == _text(b)


def _same_dec(db_value: Any, truth_value: Any) -> bool:
    expected = _dec(truth_value)
    if db_value is None or expected is None:
        return db_value is None and expected is None
    return isinstance(db_value, D) and db_value == expected


def _compare(report: Report, where: str, pairs: Iterable[tuple[str, Any, Any, str]]) -> None:
    for name, got, want, kind in pairs:
        same = _same_dec(got, want) if kind == "dec" else _same_text(got, want) if kind == "text" else got == want
        if not same:
            report.add(f"{where}: {name} is {got!r}, truth says {want!r}")


def verify(conn: Connection, truth: dict[str, Any], months: Iterable[str], schema: str | None = None) -> Report:
    """The database (the tables of `schema`; None: the connection's search_path) against `truth` for `months`."""
    conn = in_schema(conn, schema)
    truth = normalize_truth(truth)
    exp = expected_from_truth(truth, months)
    report = Report(months=exp.months, schema=schema)
    report.counts = db_counts(conn)
    report.expected_counts = {"nfe": len(exp.nfe), "nfe_item": exp.item_lines, "nfe_parcela": exp.parcelas,
                              "contato": len(exp.contact_ids), "produto_sku": len(exp.skus),
                              "produto": len({exp.sku_to_products[s][0] for s in exp.known_skus}),
                              "forma_pagamento": len(exp.payment_form_ids)}
    stored = _check_headers(conn, report, truth, exp)
    _check_items(conn, report, exp, stored)
    _check_parcelas(conn, report, exp, stored)
    _check_payment_forms(conn, report, truth, exp)
    _check_contacts(conn, report, truth, exp)
    _check_skus_and_products(conn, report, truth, exp)
    return report


def _check_headers(conn: Connection, report: Report, truth: dict[str, Any], exp: Expected) -> set[int]:
    """NF-e headers: none missing, none extra, every field right. Returns the ids stored."""
    tz = ZoneInfo(TIMEZONE)
    rows = _rows(conn, "SELECT id, tipo, situacao, numero, serie, chave_acesso, contato_id, valor_nota, valor_frete,"
                       " data_emissao_raw, data_emissao, raw IS NOT NULL FROM nfe")
    stored = {r[0]: r for r in rows}
    for nfe_id in sorted(set(exp.nfe) - set(stored)):
        n = exp.nfe[nfe_id]
        report.add(f"nfe {nfe_id} (numero {n.get('numero')}, {n.get('dataEmissao')}, situacao {n.get('situacao')}) "
                   "missing")
    for nfe_id in sorted(set(stored) - set(exp.nfe)):
        why = ("an incoming NF-e (tipo 0)" if nfe_id in exp.incoming_ids else
               "not in these months" if nfe_id in truth["nfe"] else "unknown to Bling")
        report.add(f"nfe {nfe_id} stored but should not be: {why}")
    for nfe_id in sorted(set(stored) & set(exp.nfe)):
        n, r = exp.nfe[nfe_id], stored[nfe_id]
        emitted = datetime.datetime.strptime(n["dataEmissao"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=tz)
        _compare(report, f"nfe {nfe_id}", [
            ("tipo", r[1], 1, "eq"), ("situacao", r[2], n.get("situacao"), "eq"),
            ("numero", r[3], n.get("numero"), "text"), ("serie", r[4], n.get("serie"), "eq"),
            ("chave_acesso", r[5], n.get("chaveAcesso"), "text"),
            ("contato_id", r[6], _id(_get(n, "contato", "id")), "eq"),
            ("valor_nota", r[7], n.get("valorNota"), "dec"), ("valor_frete", r[8], n.get("valorFrete"), "dec"),
            ("data_emissao_raw", r[9], n.get("dataEmissao"), "text"), ("data_emissao", r[10], emitted, "eq"),
            ("raw present", r[11], True, "eq")])
    return set(stored)


def _rows_by_nfe(conn: Connection, sql: str) -> dict[int, list[Row]]:
    """The rows of a per-NF-e line table (sql selects nfe_id first, ordered by nfe_id, linha), grouped by NF-e."""
    by_nfe: dict[int, list[Row]] = {}
    for r in _rows(conn, sql):
        by_nfe.setdefault(r[0], []).append(r)
    return by_nfe


def _line_pairs(exp: Expected, stored: set[int], by_nfe: dict[int, list[Row]],
                key: str) -> Iterator[tuple[int, list[Any], list[Row]]]:
    """(nfe_id, truth's lines under `key`, the stored rows) for every expected NF-e that is stored."""
    for nfe_id in sorted(set(exp.nfe) & stored):
        yield nfe_id, exp.nfe[nfe_id].get(key) or [], by_nfe.get(nfe_id, [])


def _check_items(conn: Connection, report: Report, exp: Expected, stored: set[int]) -> None:
    """Items, line by line in Bling's order; none for an NF-e that should not be stored."""
    items = _rows_by_nfe(conn, "SELECT nfe_id, linha, codigo, descricao, unidade, quantidade, valor, valor_total "
                               "FROM nfe_item ORDER BY nfe_id, linha")
    for nfe_id, want, got in _line_pairs(exp, stored, items, "itens"):
        if [r[1] for r in got] != list(range(1, len(got) + 1)) or len(got) != len(want):
            report.add(f"nfe {nfe_id}: item lines {[r[1] for r in got]}, truth has {len(want)} line(s)")
        for line, (it, r) in enumerate(zip(want, got), start=1):
            _compare(report, f"nfe_item {nfe_id}/{line}", [
                ("codigo", r[2], it.get("codigo"), "text"), ("descricao", r[3], it.get("descricao"), "text"),
                ("unidade", r[4], it.get("unidade"), "text"), ("quantidade", r[5], it.get("quantidade"), "dec"),
                ("valor", r[6], it.get("valor"), "dec"), ("valor_total", r[7], it.get("valorTotal"), "dec")])
    for nfe_id in sorted(set(items) - set(exp.nfe)):
        report.add(f"nfe_item rows for nfe {nfe_id}, which should not be stored")


def _check_parcelas(conn: Connection, report: Report, exp: Expected, stored: set[int]) -> None:
    """Parcelas, line by line: date, value and payment form."""
    parcelas = _rows_by_nfe(conn, "SELECT nfe_id, linha, data, valor, forma_pagamento_id FROM nfe_parcela "
                                  "ORDER BY nfe_id, linha")
    for nfe_id, want, got in _line_pairs(exp, stored, parcelas, "parcelas"):
        if len(got) != len(want):
            report.add(f"nfe {nfe_id}: {len(got)} parcela(s) stored, truth has {len(want)}")
        for line, (p, r) in enumerate(zip(want, got), start=1):
            want_date = (datetime.date.fromisoformat(p["data"]) if p.get("data") and p["data"] != "0000-00-00"
                         else None)
            _compare(report, f"nfe_parcela {nfe_id}/{line}", [
                ("linha", r[1], line, "eq"), ("data", r[2], want_date, "eq"), ("valor", r[3], p.get("valor"), "dec"),
                ("forma_pagamento_id", r[4], _id(_get(p, "formaPagamento", "id")), "eq")])


def _check_payment_forms(conn: Connection, report: Report, truth: dict[str, Any], exp: Expected) -> None:
    """Every payment form the parcelas reference: present, and right (encontrada=false for one Bling lacks)."""
    forms = {r[0]: r for r in _rows(conn, "SELECT id, descricao, tipo_pagamento, encontrada FROM forma_pagamento")}
    _check_referenced(report, "forma_pagamento", exp.payment_form_ids, truth["payment_forms"], forms, ("encontrada", 3),
                      lambda f, r: [("descricao", r[1], f.get("descricao"), "text"),
                                    ("tipo_pagamento", r[2], f.get("tipoPagamento"), "eq"),
                                    ("encontrada", r[3], True, "eq")])


def _check_contacts(conn: Connection, report: Report, truth: dict[str, Any], exp: Expected) -> None:
    """Every contact the NF-e reference: present, and right (encontrado=false for one Bling does not know)."""
    contacts = {r[0]: r for r in _rows(conn, "SELECT id, encontrado, nome, numero_documento, email FROM contato")}
    _check_referenced(report, "contato", exp.contact_ids, truth["contacts"], contacts, ("encontrado", 1),
                      lambda c, r: [("encontrado", r[1], True, "eq"), ("nome", r[2], c.get("nome"), "text"),
                                    ("numero_documento", r[3], c.get("numeroDocumento"), "text"),
                                    ("email", r[4], c.get("email"), "text")],
                      missing_detail=lambda c: f" ({c.get('nome')})" if c else " (unknown to Bling)")


def _check_referenced(report: Report, table: str, ids: set[int], known: dict[int, Any], stored: dict[int, Row],
                      flag: tuple[str, int], fields: Callable[[Any, Row], list[tuple[str, Any, Any, str]]],
                      missing_detail: Callable[[Any], str] = lambda _truth: "") -> None:
    """Rows the NF-e reference by id: each stored; for an id Bling does not know (not in `known`) only its
    `flag` column (name, index) false, else `fields(truth, row)` right."""
    for ref in sorted(ids):
        want, row = known.get(ref), stored.get(ref)
        if row is None:
            report.add(f"{table} {ref} missing{missing_detail(want)}")
        elif want is None:
            _compare(report, f"{table} {ref}", [(flag[0], row[flag[1]], False, "eq")])
        else:
            _compare(report, f"{table} {ref}", fields(want, row))


def _check_skus_and_products(conn: Connection, report: Report, truth: dict[str, Any], exp: Expected) -> None:
    """Every SKU of the items: resolved to the product whose codigo it is (and that product right), or unknown."""
    skus = {r[0]: r for r in _rows(conn, "SELECT codigo, produto_id, encontrado FROM produto_sku")}
    products = {r[0]: r for r in _rows(conn, "SELECT id, codigo, nome, situacao, preco, preco_custo FROM produto")}
    for sku in sorted(exp.skus):
        r = skus.get(sku)
        candidates = exp.sku_to_products[sku]
        if r is None:
            report.add(f"produto_sku {sku!r} missing" + (" (an unknown SKU must be recorded as unknown)"
                                                         if not candidates else ""))
            continue
        if not candidates:
            _compare(report, f"produto_sku {sku!r} (unknown to Bling)", [("encontrado", r[2], False, "eq"),
                                                                         ("produto_id", r[1], None, "eq")])
            continue
        if not r[2] or r[1] not in candidates:
            report.add(f"produto_sku {sku!r}: produto_id {r[1]} encontrado={r[2]}, truth: product(s) {candidates}")
            continue
        p, pr = truth["products"][r[1]], products.get(r[1])
        if pr is None:
            report.add(f"produto {r[1]} (SKU {sku!r}) missing")
            continue
        _compare(report, f"produto {r[1]}", [
            ("codigo", pr[1], sku, "text"), ("nome", pr[2], p.get("nome"), "text"),
            ("situacao", pr[3], p.get("situacao"), "text"), ("preco", pr[4], p.get("preco"), "dec"),
            ("preco_custo", pr[5], _get(p, "fornecedor", "precoCusto"), "dec")])


def is_complete(conn: Connection, truth: dict[str, Any], months: Iterable[str], schema: str | None = None) -> bool:
    """Cheap "has everything arrived": every expected NF-e, contact, SKU and payment form has a row."""
    conn = in_schema(conn, schema)
    exp = expected_from_truth(normalize_truth(truth), months)
    have_nfe = {r[0] for r in _rows(conn, "SELECT id FROM nfe")}
    have_contacts = {r[0] for r in _rows(conn, "SELECT id FROM contato")}
    have_skus = {r[0] for r in _rows(conn, "SELECT codigo FROM produto_sku")}
    have_forms = {r[0] for r in _rows(conn, "SELECT id FROM forma_pagamento")}
    return (set(exp.nfe) <= have_nfe and exp.contact_ids <= have_contacts and exp.skus <= have_skus
            and exp.payment_form_ids <= have_forms)


def wait_for_pipeline(stack: LocalStack, truth: dict[str, Any], months: Iterable[str], quiet_s: float = 8.0,
                      timeout_s: float = 600.0, schema: str | None = None) -> float:
    """Block until a LocalStack's functions are quiet, every expected row is present, and the database did not
    change between two consecutive quiet checks. Returns seconds waited; TimeoutError otherwise."""
    return wait_for_accounts(stack, {schema: truth}, months, quiet_s=quiet_s, timeout_s=timeout_s)


def wait_for_accounts(stack: LocalStack, truths: Mapping[str | None, dict[str, Any]], months: Iterable[str],
                      quiet_s: float = 8.0, timeout_s: float = 600.0) -> float:
    """wait_for_pipeline for several accounts at once: `truths` maps each schema (None: the connection's
    search_path) to its account's truth; settled when every schema is complete and none changed between two
    consecutive quiet checks."""
    months = list(months)
    last: list[Any] = [None]

    def settled() -> bool:
        conn = stack.connect()  # a new connection each time: the database may have been restarted
        try:
            snapshot = {schema: progress(conn, schema) for schema in truths}
            stable = snapshot == last[0]
            last[0] = snapshot
            return stable and all(is_complete(conn, truth, months, schema) for schema, truth in truths.items())
        finally:
            conn.close()

    return stack.wait_for_quiet(quiet_s=quiet_s, timeout_s=timeout_s, predicate=settled, poll_s=1.0)


def duplicate_report(conn: Connection, schema: str | None = None) -> list[str]:
    """Rows that share what should be unique (belt and braces on top of the primary keys)."""
    conn = in_schema(conn, schema)
    problems = []
    checks = {"nfe": "id", "nfe_item": "nfe_id, linha", "nfe_parcela": "nfe_id, linha", "contato": "id",
              "produto": "id", "produto_sku": "codigo", "forma_pagamento": "id", "nfe (chave_acesso)": "chave_acesso"}
    for label, key in checks.items():
        table = label.split(" ")[0]
        rows = _rows(conn, f"SELECT {key}, count(*) FROM {table} WHERE ({key}) IS NOT NULL GROUP BY {key} "
                           "HAVING count(*) > 1 LIMIT 5")
        if rows:
            problems.append(f"{label}: duplicated {key}: {rows}")
    return problems


def foreign_rows(conn: Connection, other_truth: dict[str, Any], schema: str | None = None) -> list[str]:
    """Rows of `schema` that belong to another account, `other_truth` (its NF-e, contacts, products, payment forms
    by id; ids are disjoint across the sandbox's accounts, as on Bling). Empty when the schema holds none."""
    conn = in_schema(conn, schema)
    other = normalize_truth(other_truth)
    checks = (("nfe", "SELECT id FROM nfe", "nfe"), ("nfe_item", "SELECT DISTINCT nfe_id FROM nfe_item", "nfe"),
              ("nfe_parcela", "SELECT DISTINCT nfe_id FROM nfe_parcela", "nfe"),
              ("contato", "SELECT id FROM contato", "contacts"), ("produto", "SELECT id FROM produto", "products"),
              ("produto_sku", "SELECT DISTINCT produto_id FROM produto_sku WHERE produto_id IS NOT NULL", "products"),
              ("forma_pagamento", "SELECT id FROM forma_pagamento", "payment_forms"))
    problems = []
    for table, sql, key in checks:
        found = sorted({r[0] for r in _rows(conn, sql)} & set(other[key]))
        if found:
            problems.append(f"{table}: {len(found)} id(s) of the other account, e.g. {found[:5]}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.verify", description=__doc__.split("\n")[0])
    parser.add_argument("--truth-url", required=True, help="the sandbox base URL (serves /__admin/truth)")
    parser.add_argument("--months", nargs="+", required=True, help="YYYY-MM ...")
    parser.add_argument("--account", help="the sandbox account whose truth to check against (default: the first)")
    parser.add_argument("--schema", help="the PostgreSQL schema to check (default: the connection's search_path)")
    args = parser.parse_args(argv)
    conn = connect_from_env()
    try:
        report = verify(conn, fetch_truth(args.truth_url, account=args.account), args.months, schema=args.schema)
        dups = duplicate_report(conn, schema=args.schema)
    finally:
        conn.close()
    print(report.summary())
    for d in dups:
        print("DUPLICATE:", d)
    return 0 if report.ok and not dups else 1


if __name__ == "__main__":
    sys.exit(main())
