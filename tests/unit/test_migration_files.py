"""Every migration must work inside any account's schema (ADR 011): it runs with search_path set to that one
schema, so a name qualified with a schema (public.x, bling_x.y) or a search_path of its own would reach outside
it. The files that must name public are listed in shared.migrate.PUBLIC_ONLY, which account schemas skip."""
import re

import pytest

from shared import migrate

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
