"""The yardstick of issue 13 on a hand-made truth: every term counted as docs/BENCHMARKS.md says."""
from __future__ import annotations

import pytest

from local import verify
from local.bench_report import fewest_calls, gap_to_limit


def _note(nid: int, when: str, contact: int, skus: list[str], forms: list[int], situacao: int = 6,
          tipo: int = 1) -> dict:
    return {"id": nid, "tipo": tipo, "situacao": situacao, "dataEmissao": when, "contato": {"id": contact},
            "itens": [{"codigo": s} for s in skus], "parcelas": [{"formaPagamento": {"id": f}} for f in forms]}


def _truth() -> dict:
    notes = [_note(i, f"2024-{1 + i % 12:02d}-10 12:00:00", 500 + i % 7, [f"SKU-{i % 130}"], [900 + i % 3])
             for i in range(1, 206)]  # 205 notes in 2024, 130 distinct SKUs, 7 contacts, 3 forms
    notes += [_note(300, "2024-05-01 00:00:00", 501, ["SKU-1"], [900], situacao=2),  # cancelled: situacao=2 pass
              _note(301, "2025-01-31 23:59:59", 999, ["LEGADO-1", "SKU-2"], [], situacao=2),
              _note(302, "2025-02-02 10:00:00", 998, ["SKU-3"], [901], tipo=0),  # incoming: not wanted
              _note(303, "2023-12-31 23:59:59", 997, ["SKU-4"], [902])]  # outside the range
    products = {10_000 + k: {"id": 10_000 + k, "codigo": f"SKU-{k}"} for k in range(130)}
    products[20_000] = {"id": 20_000, "codigo": "SKU-NEVER-SOLD"}
    return {"nfe": {n["id"]: n for n in notes}, "products": products}


def test_fewest_calls_counts_each_term_from_the_truth() -> None:
    months = [f"2024-{m:02d}" for m in range(1, 13)] + ["2025-01", "2025-02"]
    result = fewest_calls(verify.expected_from_truth(_truth(), months))
    by_kind = result["by_kind"]
    # 2024: default pass 205 notes → ⌈205/100⌉ + 1 = 4 pages, situacao=2 pass 1 note → 2 pages;
    # 2025: default pass 0 (the only outgoing note is cancelled) → 1 page, situacao=2 pass 1 note → 2 pages.
    assert result["list_pages_per_year"] == {"2024": {"default": 205, "situacao=2": 1},
                                             "2025": {"default": 0, "situacao=2": 1}}
    assert by_kind["nfe_list"] == 4 + 2 + 1 + 2
    assert by_kind["nfe_detail"] == 207  # every outgoing note of the range, cancelled ones included
    assert by_kind["contato"] == 8  # 7 + the one only the cancelled 2025 note references
    assert by_kind["produtos_list"] == 2  # 131 distinct SKUs (LEGADO-1 included) ÷ 100 per call
    assert by_kind["produto"] == 130  # the SKUs that resolve; the unsold product and LEGADO-1 need no detail
    assert by_kind["forma_pagamento"] == 3
    assert result["total"] == 9 + 207 + 8 + 2 + 130 + 3
    assert {t["name"]: t["basis"] for t in result["terms"]}["list"] == "design"


def test_an_empty_year_of_the_range_still_costs_one_page_per_pass() -> None:
    result = fewest_calls(verify.expected_from_truth(_truth(), ["2022-06"]))
    assert result["by_kind"]["nfe_list"] == 2 and result["total"] == 2


def test_gap_to_limit() -> None:
    gap = gap_to_limit(calls_made=330, wall_s=13.2, fewest=300, limit_per_s=30)
    assert gap["floor_s"] == pytest.approx(10.0)
    assert gap["calls_ratio"] == pytest.approx(1.1) and gap["wall_ratio"] == pytest.approx(1.32)
