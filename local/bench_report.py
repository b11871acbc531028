"""The one table `make bench` prints (measure | value | target | met?) and its JSON twin."""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any


@dataclasses.dataclass
class Row:
    measure: str
    value: str
    target: str = ""
    met: bool | None = None  # None: no target, or not measurable in this run
    raw: Any = None  # the number behind `value`, for the JSON

    def to_json(self) -> dict[str, Any]:
        return {"measure": self.measure, "value": self.value, "target": self.target or None, "met": self.met,
                "raw": self.raw}


def met_text(met: bool | None) -> str:
    return {True: "yes", False: "NO", None: "-"}[met]


def format_table(rows: Iterable[Row]) -> str:
    rows = list(rows)
    header = ("measure", "value", "target", "met?")
    cells = [header] + [(r.measure, r.value, r.target or "-", met_text(r.met)) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(4)]

    def line(c: tuple[str, ...]) -> str:
        return " | ".join(c[i].ljust(widths[i]) if i != 1 else c[i].rjust(widths[i]) for i in range(4)).rstrip()

    rule = "-+-".join("-" * w for w in widths)
    return "\n".join([line(header), rule] + [line(c) for c in cells[1:]])


def write_json(path: Path, meta: dict[str, Any], rows: Iterable[Row], details: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"meta": meta, "rows": [r.to_json() for r in rows], "details": details}
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)


def fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    return f"{seconds:.1f} s" if seconds >= 10 else f"{seconds:.2f} s"


def fmt_pct(fraction: float | None) -> str:
    return "n/a" if fraction is None else f"{fraction * 100:.1f} %"


# ------------------------------------------------------------------------------------------------ the yardstick
# Issue 13 judges every run against the fewest API calls that could deliver what the database must hold for the
# benchmarked range, computed from the sandbox's truth with the same expectation the backfill is verified against
# (local.verify.expected_from_truth: every outgoing NF-e of the range, cancelled ones included, the contacts,
# SKUs and payment forms they reference). Each term says whether it is Bling's physical minimum or our design.

PAGE_SIZE = 100  # GET /nfe and GET /produtos: `limite` ≤ 100 (Bling's documented maximum, the sandbox's too)
# codigos[] per GET /produtos: as many as one page of answers holds (each SKU matches at most one product here);
# 100 codes of ~10 characters make a URL of ≈ 2.5 kB, far below any server's limit. The pipeline sends 50.
SKUS_PER_LOOKUP = 100
# One GET /nfe may span at most one year (Bling answers 400 beyond): one window per calendar year is the fewest
# windows that cover a range of whole months, and each pass needs its own listing.
LIST_PASSES = ("default", "situacao=2")

KIND_OF_TERM = {"list": "nfe_list", "detail": "nfe_detail", "contato": "contato", "sku": "produtos_list",
                "produto": "produto", "forma": "forma_pagamento"}


@dataclasses.dataclass
class Term:
    name: str  # list / detail / contato / sku / produto / forma (see KIND_OF_TERM)
    calls: int
    how: str
    basis: str  # "Bling": nothing can do it in fewer calls; "design": our chosen reading of the rules


def fewest_calls(expected: Any) -> dict[str, Any]:
    """The fewest calls for an `Expected` (local.verify): terms, their total, and the total per request kind."""
    per_year: dict[str, dict[str, int]] = {}
    for month in expected.months:
        per_year.setdefault(month[:4], dict.fromkeys(LIST_PASSES, 0))
    for note in expected.nfe.values():
        year = str(note["dataEmissao"])[:4]
        per_year.setdefault(year, dict.fromkeys(LIST_PASSES, 0))
        per_year[year]["situacao=2" if note.get("situacao") == 2 else "default"] += 1
    list_pages = sum(-(-n // PAGE_SIZE) + 1 for counts in per_year.values() for n in counts.values())
    skus = len(expected.skus)
    products = len({pid for ids in expected.sku_to_products.values() for pid in ids})
    terms = [
        Term("list", list_pages, f"Σ over {len(per_year)} calendar year(s) × {len(LIST_PASSES)} passes (default, "
             f"situacao=2) of ⌈ids ÷ {PAGE_SIZE}⌉ + 1 (the +1 is the page that shows the end; Bling sends no "
             "total)", "design"),
        Term("detail", len(expected.nfe), "one GET /nfe/{id} per NF-e (items and parcelas are only in the detail)",
             "Bling"),
        Term("contato", len(expected.contact_ids), "one GET /contatos/{id} per distinct contact", "Bling"),
        Term("sku", -(-skus // SKUS_PER_LOOKUP), f"⌈{skus} distinct SKUs ÷ {SKUS_PER_LOOKUP} codigos[] per GET "
             "/produtos⌉ (items carry the SKU, not the product id)", "Bling"),
        Term("produto", products, "one GET /produtos/{id} per distinct product an SKU resolves to (the list shape "
             "lacks unit, GTIN, tax data)", "Bling"),
        Term("forma", len(expected.payment_form_ids), "one GET /formas-pagamentos/{id} per distinct form",
             "Bling"),
    ]
    by_kind = {KIND_OF_TERM[t.name]: t.calls for t in terms}
    return {"total": sum(t.calls for t in terms), "by_kind": by_kind, "list_pages_per_year": per_year,
            "terms": [dataclasses.asdict(t) for t in terms]}


def gap_to_limit(calls_made: int, wall_s: float, fewest: int, limit_per_s: float) -> dict[str, float | None]:
    """calls made ÷ fewest calls, and wall time ÷ the time the fewest calls take at the account's limit."""
    floor_s = fewest / limit_per_s if limit_per_s > 0 else None
    return {"fewest_calls": fewest, "floor_s": floor_s,
            "calls_ratio": calls_made / fewest if fewest else None,
            "wall_ratio": wall_s / floor_s if floor_s else None}
