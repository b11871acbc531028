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
