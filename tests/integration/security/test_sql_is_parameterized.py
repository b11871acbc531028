"""Every SQL statement in shared/ and functions/ is a constant with %s placeholders; values never enter the text.

The check reads the code (AST) for every call that sends SQL (cursor.execute / executemany / execute_simple,
db.fetch_all / db.execute): its statement must be a string literal, or an f-string whose only interpolations
are the column and placeholder lists listed in ALLOWED below (built from module constants: column-name tuples
and '%s' repeated), or one of the two pass-through names (the db helpers' own `sql` parameter and a migration
file's text). Any %-formatting, .format() or other interpolation of a statement fails the test, naming the line.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.chaos.reliability import record

REPO = Path(__file__).resolve().parents[3]
SQL_CALLS = {"execute", "executemany", "execute_simple", "fetch_all"}

# (file, source text of an interpolated expression) that may appear inside an f-string statement: column lists
# and placeholder lists built from constants only. Adding a line here is a reviewed decision.
ALLOWED = {
    # db.upsert: names checked against an identifier pattern at run time; table and prelude literal at every call
    ("shared/db.py", "prelude"),
    ("shared/db.py", "table"),
    ("shared/db.py", "columns"),  # ", ".join(row): the mapper's literal keys
    ("shared/db.py", "placeholders"),  # "%s" or "%s::<cast>" per column
    ("shared/db.py", "key"),
    ("shared/db.py", "updates"),  # "c = EXCLUDED.c" per column, and "touch = now()"
    ("shared/nfe_store.py", "table"),  # _insert_rows: a literal table name at every call (checked below)
    ("shared/nfe_store.py", "', '.join(names)"),  # _insert_rows: the column constants and the cast names
    ("shared/nfe_store.py", "', '.join([row_placeholder] * len(chunk))"),  # '(%s, ..., %s::jsonb)' repeated
}
# Statements passed through by name: the db helpers' parameter, and a migration file's text.
PASS_THROUGH = {("shared/db.py", "sql"), ("shared/migrate.py", "sql")}
# The names the ALLOWED expressions are built from, and what they must be.
COLUMN_CONSTANTS = {"shared/nfe_store.py": ("_ITEM_COLUMNS", "_PARCELA_COLUMNS")}
IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")


def sources() -> list[Path]:
    return sorted(p for d in ("shared", "functions") for p in (REPO / d).rglob("*.py"))


def sql_calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in SQL_CALLS \
                and node.args:
            yield node


def statement_problems(rel: str, arg: ast.expr) -> list[str]:
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return []
    if isinstance(arg, ast.JoinedStr):
        out = []
        for part in arg.values:
            if isinstance(part, ast.FormattedValue):
                text = ast.unparse(part.value)
                if (rel, text) not in ALLOWED:
                    out.append(f"interpolates {text!r}")
        return out
    if isinstance(arg, ast.Name) and (rel, arg.id) in PASS_THROUGH:
        return []
    if isinstance(arg, ast.BinOp) and isinstance(arg.op, ast.Mod):
        return ["builds the statement with %-formatting"]
    if isinstance(arg, ast.Call) and isinstance(arg.func, ast.Attribute) and arg.func.attr == "format":
        return ["builds the statement with .format()"]
    if isinstance(arg, ast.BinOp) and isinstance(arg.op, ast.Add):
        return statement_problems(rel, arg.left) + statement_problems(rel, arg.right)
    return [f"statement is {ast.unparse(arg)!r}, not a literal"]


def test_every_sql_statement_is_a_constant_with_placeholders():
    problems, statements, used = [], 0, set()
    for path in sources():
        rel = path.relative_to(REPO).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for call in sql_calls(tree):
            statements += 1
            arg = call.args[0]
            for problem in statement_problems(rel, arg):
                problems.append(f"{rel}:{call.lineno}: {problem}")
            if isinstance(arg, ast.JoinedStr):
                used |= {(rel, ast.unparse(p.value)) for p in arg.values if isinstance(p, ast.FormattedValue)}
    assert problems == [], "SQL built from values:\n" + "\n".join(problems)
    assert statements >= 25, f"only {statements} SQL calls found: the scan is not looking where the SQL is"
    assert used >= ALLOWED, f"whitelist entries no longer used (remove them): {sorted(ALLOWED - used)}"
    record("SQL built only from constants",
           fault=f"AST scan of every SQL call in shared/ and functions/ ({statements} statements)",
           outcome=f"0 values interpolated; {len(ALLOWED)} whitelisted interpolations, all column or '%s' lists "
                   "built from constants", ok=True)


def test_the_interpolated_lists_are_built_from_constant_identifiers():
    """The names behind ALLOWED: tuples of plain column names, literal tables and preludes at every db.upsert
    call, and db.upsert itself refusing a name that is not a plain identifier."""
    from shared import db, nfe_store

    for name in COLUMN_CONSTANTS["shared/nfe_store.py"]:
        value = getattr(nfe_store, name)
        assert isinstance(value, tuple) and value and all(isinstance(c, str) and IDENTIFIER.match(c) for c in value)
    upserts = 0
    for path in sources():
        for call in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr == "upsert":
                upserts += 1
                table = call.args[1]
                assert isinstance(table, ast.Constant) and IDENTIFIER.match(table.value), ast.unparse(call)
                for keyword in call.keywords:
                    if keyword.arg in ("prelude", "key", "touch"):
                        assert isinstance(keyword.value, (ast.Constant, ast.JoinedStr)) and not any(
                            isinstance(v, ast.FormattedValue) for v in getattr(keyword.value, "values", [])), \
                            ast.unparse(call)
    assert upserts >= 5, f"only {upserts} db.upsert calls found"

    class Cursor:
        def execute(self, sql, params):  # never reached: the name is refused first
            raise AssertionError(sql)

    with pytest.raises(ValueError, match="identifiers"):
        db.upsert(Cursor(), "contato", {"id": 1, "nome) VALUES (1); DROP TABLE nfe; --": "x"})
    tree = ast.parse((REPO / "shared/nfe_store.py").read_text(encoding="utf-8"))
    inserts = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
               and n.func.id == "_insert_rows"]
    assert inserts, "nfe_store no longer calls _insert_rows: update ALLOWED"
    for call in inserts:
        _, table, columns, _, casts = call.args
        assert isinstance(table, ast.Constant) and IDENTIFIER.match(table.value), ast.unparse(call)
        assert isinstance(columns, ast.Name) and columns.id in COLUMN_CONSTANTS["shared/nfe_store.py"]
        assert isinstance(casts, ast.Dict) and all(isinstance(k, ast.Constant) and IDENTIFIER.match(k.value)
                                                   and isinstance(v, ast.Constant) and IDENTIFIER.match(v.value)
                                                   for k, v in zip(casts.keys, casts.values)), ast.unparse(call)


def test_the_scan_catches_what_it_is_written_for():
    bad = '''
cur.execute(f"SELECT * FROM nfe WHERE id = {nfe_id}")
cur.execute("SELECT * FROM nfe WHERE numero = '%s'" % numero)
db.fetch_all("SELECT * FROM contato WHERE nome = '{}'".format(nome))
cur.executemany("INSERT INTO t VALUES (" + value + ")", rows)
cur.execute(statement)
cur.execute("SELECT 1 WHERE x = %s", (x,))
'''
    found = [statement_problems("shared/x.py", call.args[0]) for call in sql_calls(ast.parse(bad))]
    assert [bool(p) for p in found] == [True, True, True, True, True, False], found
