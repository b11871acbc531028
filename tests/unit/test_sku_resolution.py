"""SKU → product without a server: exact matches only, the stock-filter passes, the choice between duplicates,
paging of the lookup, and what an incomplete or failing lookup leaves undecided (never recorded unknown)."""
from __future__ import annotations

from typing import Any

from shared import enrichment, record_failures
from shared.bling.errors import BlingRetryableError
from shared.domain import EntityKind
from tests.unit.fakes import FakeBling


def products(query: dict[str, list[str]], catalogue: list[dict[str, Any]]) -> dict[str, Any]:
    """GET /produtos?codigos[]=…: what Bling answers, near matches included, 100 a page."""
    wanted = query["codigos[]"]
    stock = query.get("filtroSaldoEstoque", ["default"])[0]
    hits = [p for p in catalogue if any(w in p["codigo"] for w in wanted) and p.get("stock", "default") == stock]
    page = int(query["pagina"][0])
    return {"data": hits[(page - 1) * 100:page * 100]}


def resolve(catalogue: list[dict[str, Any]], skus: list[str]) -> tuple[enrichment.SkuLookup, FakeBling,
                                                                       record_failures.Attempts]:
    bling = FakeBling({"/produtos": lambda q: products(q, catalogue)})
    attempts = record_failures.Attempts()
    return enrichment.find_products_by_sku(bling, skus, attempts), bling, attempts


def test_only_an_exact_codigo_is_accepted_never_a_near_match():
    lookup, _, _ = resolve([{"id": 1, "codigo": "A-10"}, {"id": 2, "codigo": "A-1"}], ["A-1"])
    assert {s: p["id"] for s, p in lookup.found.items()} == {"A-1": 2}


def test_a_sku_missing_by_default_is_asked_again_per_stock_filter_then_called_unknown():
    catalogue = [{"id": 5, "codigo": "ZERO", "stock": "0"}]
    lookup, bling, _ = resolve(catalogue, ["ZERO", "NOPE"])
    assert {s: p["id"] for s, p in lookup.found.items()} == {"ZERO": 5}
    asked = [(q.get("filtroSaldoEstoque", [None])[0], q["pagina"][0]) for _, q in bling.calls]
    assert asked == [(None, "1"), ("0", "1"), ("0", "2"), ("2", "1")]  # each listing ends on an empty page
    assert bling.calls[-1][1]["codigos[]"] == ["NOPE"], "a pass asks only for what is still missing"
    assert lookup.decided("NOPE") and "NOPE" not in lookup.found  # a complete lookup: NOPE is unknown to Bling


def test_two_products_with_one_sku_prefer_the_active_then_the_lowest_id():
    catalogue = [{"id": 9, "codigo": "D", "situacao": "I"}, {"id": 7, "codigo": "D", "situacao": "A"},
                 {"id": 8, "codigo": "D", "situacao": "A"}]
    lookup, _, _ = resolve(catalogue, ["D"])
    assert lookup.found["D"]["id"] == 7


def test_a_lookup_with_more_than_a_page_of_near_matches_reads_every_page():
    catalogue = [{"id": i, "codigo": f"X-{i}"} for i in range(1, 251)] + [{"id": 999, "codigo": "X-"}]
    lookup, bling, _ = resolve(catalogue, ["X-"])
    assert lookup.found["X-"]["id"] == 999
    # pages 1-3; page 3 is short and every SKU has its exact match, so no empty page 4 (issue 13)
    assert bling.calls_to("/produtos") == 3


def test_a_lookup_bling_serves_the_same_page_for_leaves_its_unfound_skus_undecided_with_an_error():
    same = {"data": [{"id": 1, "codigo": "A"}]}
    bling = FakeBling({"/produtos": lambda q: same})
    lookup = enrichment.find_products_by_sku(bling, ["A", "B"], record_failures.Attempts())
    assert lookup.found["A"]["id"] == 1  # found exactly: still right
    assert not lookup.decided("B"), "an incomplete lookup must not make B unknown"
    assert bling.calls_to("/produtos") == 3  # stopped at the third identical page, no stock-filter passes for B


def test_a_lookup_that_fails_transiently_sets_its_skus_aside_for_a_retry():
    bling = FakeBling({"/produtos": lambda q: BlingRetryableError(503, "SERVER_ERROR", "down", path="/produtos")})
    attempts = record_failures.Attempts()
    lookup = enrichment.find_products_by_sku(bling, ["A", "B"], attempts)
    assert lookup.found == {}
    assert set(attempts.failed) == {(EntityKind.SKU, "A"), (EntityKind.SKU, "B")}
    assert bling.calls_to("/produtos") == 1, "not asked again in a later pass of the same call"


def test_skus_longer_than_any_product_code_are_not_looked_up():
    lookup, bling, _ = resolve([], ["x" * (enrichment.MAX_LOOKUP_SKU_LENGTH + 1)])
    assert bling.calls == [] and lookup.found == {}
