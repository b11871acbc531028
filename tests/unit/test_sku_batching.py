"""Issue 13: SKU lookups batched across invoices, without a server: lookups of up to 100 codigos[] within the
query-string budget, stock-filter passes only for what is still missing, no closing empty page when every SKU
was matched, and a message filling its last lookup with never-resolved SKUs of other stored invoices."""
from __future__ import annotations

import urllib.parse
from typing import Any

import pytest

from shared import enrichment, record_failures
from tests.unit.fakes import FakeBling


def _query_len(chunk: list[str], stock_filter: str | None = "0") -> int:
    params = [("codigos[]", s) for s in chunk] + [("criterio", "5"), ("pagina", "10"), ("limite", "100")]
    return len(urllib.parse.urlencode(params + ([("filtroSaldoEstoque", stock_filter)] if stock_filter else [])))


def test_lookups_carry_100_codigos_each():
    skus = [f"SKU-{i:05d}" for i in range(250)]
    chunks = enrichment.lookup_chunks(skus)
    assert [len(c) for c in chunks] == [100, 100, 50]
    assert [s for c in chunks for s in c] == skus
    assert all(_query_len(c) <= enrichment.MAX_LOOKUP_QUERY_BYTES for c in chunks)


def test_long_or_accented_skus_make_smaller_lookups_within_the_query_budget():
    skus = [f"PEÇA/ç ã {i:03d}" + "x" * 90 for i in range(100)]  # each ~3x longer once URL-encoded
    chunks = enrichment.lookup_chunks(skus)
    assert len(chunks) > 1 and [s for c in chunks for s in c] == skus
    assert all(_query_len(c) <= enrichment.MAX_LOOKUP_QUERY_BYTES for c in chunks)
    assert _query_len(chunks[0] + chunks[1][:1]) > enrichment.MAX_LOOKUP_QUERY_BYTES - 60, "chunks are full"


def catalogue_answer(query: dict[str, list[str]], catalogue: list[dict[str, Any]]) -> dict[str, Any]:
    stock = query.get("filtroSaldoEstoque", ["default"])[0]
    hits = [p for p in catalogue if p["codigo"] in query["codigos[]"] and p.get("stock", "default") == stock]
    page = int(query["pagina"][0])
    return {"data": hits[(page - 1) * 100:page * 100]}


def test_150_skus_cost_two_lookups_and_one_stock_filter_pass_for_the_missing_only():
    catalogue = [{"id": i + 1, "codigo": f"S{i:03d}"} for i in range(140)]
    catalogue += [{"id": 1000 + i, "codigo": f"Z{i:03d}", "stock": "0"} for i in range(5)]
    skus = [p["codigo"] for p in catalogue] + [f"NOPE{i}" for i in range(5)]
    bling = FakeBling({"/produtos": lambda q: catalogue_answer(q, catalogue)})

    lookup = enrichment.find_products_by_sku(bling, skus, record_failures.Attempts())

    assert len(lookup.found) == 145 and all(lookup.decided(s) for s in skus)
    asked = [(q.get("filtroSaldoEstoque", [None])[0], len(q["codigos[]"]), q["pagina"][0]) for _, q in bling.calls]
    # default: 100 found on a full page (so page 2 is read), 40 of 50 on a short page with some missing (the
    # empty page proves they are missing); filter 0: the 10 still missing; filter 2: the 5 still missing.
    assert asked == [(None, 100, "1"), (None, 100, "2"), (None, 50, "1"), (None, 50, "2"),
                     ("0", 10, "1"), ("0", 10, "2"), ("2", 5, "1")]


def test_a_short_page_that_matches_every_sku_ends_the_lookup_without_the_empty_page():
    catalogue = [{"id": i + 1, "codigo": f"S{i}"} for i in range(30)]
    bling = FakeBling({"/produtos": lambda q: catalogue_answer(q, catalogue)})

    lookup = enrichment.find_products_by_sku(bling, [p["codigo"] for p in catalogue], record_failures.Attempts())

    assert len(lookup.found) == 30 and bling.calls_to("/produtos") == 1


class StoredSkus:
    """A fake of our SchemaDb's read (fetch_all) for the two queries skus_to_resolve makes: which of the message's
    SKUs were resolved recently (produto_sku), and the never-resolved SKUs of other stored invoices (nfe_item)."""

    def __init__(self) -> None:
        self.fresh: set[str] = set()
        self.pending: list[str] = []
        self.asked: list[int] = []

    def fetch_all(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        if "FROM produto_sku WHERE" in sql:
            wanted, _since = params
            return [(sku,) for sku in wanted if sku in self.fresh]
        assert "FROM nfe_item" in sql, sql
        _max_len, exclude, limit = params
        self.asked.append(limit)
        return [(sku,) for sku in self.pending if sku not in set(exclude)][:limit]


@pytest.fixture
def stored() -> StoredSkus:
    return StoredSkus()


def test_a_message_fills_its_last_lookup_with_never_resolved_skus_of_other_invoices(stored):
    stored.pending = [f"P{i:03d}" for i in range(300)]
    own = [f"A{i:02d}" for i in range(30)]

    chosen = enrichment.skus_to_resolve(stored, own, 30)

    assert chosen[:30] == own and chosen[30:] == stored.pending[:70]
    assert len(enrichment.lookup_chunks(chosen)) == 1, "the extras cost no extra lookup"


def test_a_message_with_nothing_stale_of_its_own_makes_no_lookup_for_others(stored):
    stored.fresh = {"A", "B"}
    stored.pending = ["P1", "P2"]

    assert enrichment.skus_to_resolve(stored, ["A", "B"], 30) == []
    assert stored.asked == []


def test_a_full_lookup_of_its_own_takes_no_extras(stored):
    stored.pending = ["P1"]
    own = [f"A{i:03d}" for i in range(200)]
    assert enrichment.skus_to_resolve(stored, own, 30) == own
