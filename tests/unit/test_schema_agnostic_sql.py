"""Every migration and every statement of the store layer must work inside any account's schema (ADR 011): they
run with search_path set to that one schema, so a name qualified with a schema (public.x, bling_x.y) or a
search_path of their own would reach outside it. The migrations that must name public are listed in
shared.migrate.PUBLIC_ONLY, which account schemas skip; the code that moves tables between schemas is listed in
SCHEMA_CODE."""
import ast
import re
from pathlib import Path

import pytest

from shared import migrate

REPO = Path(__file__).resolve().parents[2]
# The code whose job is schemas themselves (finding account schemas, adopting public, reader roles).
SCHEMA_CODE = {"shared/migrate.py", "shared/ops/accounts_db.py"}
_QUALIFIED = re.compile(r"\b(?:public|bling_[a-z0-9_]+)\.[a-z_]")
_SQL = re.compile(r"\b(?:SELECT|INSERT|UPDATE|DELETE|FROM|JOIN|INTO|TRUNCATE)\b")  # the code writes SQL in capitals
_COMMENT = re.compile(r"--[^\n]*")
_OUTSIDE_THE_SCHEMA = re.compile(r"\bpublic\b|\bbling_\w*\s*\.|\bsearch_path\b|\bCREATE\s+SCHEMA\b", re.I)


def _code(path) -> str:
    return _COMMENT.sub("", path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", migrate.migration_files(), ids=lambda p: p.name)
def test_a_migration_uses_only_unqualified_names_or_is_listed_as_public_only(path):
    found = _OUTSIDE_THE_SCHEMA.findall(_code(path))
    if path.name in migrate.PUBLIC_ONLY:
        assert found, f"{path.name} names no schema any more: remove it from PUBLIC_ONLY"
    else:
        assert found == [], f"{path.name} reaches outside its schema ({found}): account schemas would break"


def test_public_only_names_existing_files():
    assert {p.name for p in migrate.migration_files()} >= migrate.PUBLIC_ONLY


def test_the_check_catches_what_it_is_written_for():
    for bad in ("GRANT SELECT ON ALL TABLES IN SCHEMA public TO x;", "SELECT * FROM bling_loja.nfe;",
                "SET search_path = other;", "create schema extra;"):
        assert _OUTSIDE_THE_SCHEMA.search(bad), bad
    assert not _OUTSIDE_THE_SCHEMA.search(_COMMENT.sub("", "CREATE TABLE nfe_publicada (id bigint); -- public comment"))


def test_the_store_layer_and_the_functions_use_unqualified_table_names():
    found = []
    for path in sorted(p for d in ("shared", "functions") for p in (REPO / d).rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        if rel in SCHEMA_CODE:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and _SQL.search(node.value) \
                    and _QUALIFIED.search(node.value):
                found.append(f"{rel}:{node.lineno}: {node.value[:60]!r}")
    assert found == [], "schema-qualified names outside the schema code:\n" + "\n".join(found)
    assert _QUALIFIED.search("SELECT * FROM public.nfe") and _QUALIFIED.search("bling_loja.contato")
