"""The sequential baseline for `make bench`: how the simple public Bling collectors fetch the same history.

One process, plain `requests`, a fixed pause between calls (0.35 s in real time, divided by the bench's speed-up),
in the order those collectors use (API-NOTES §3, row 1): list every month (both passes: the default listing and
`situacao=2`, pages until a short page), then every NF-e detail, then every distinct contact, payment form and
SKU (`GET /produtos?codigos[]=SKU&criterio=5`, one SKU per call, exact match). A 429 is retried with exponential
back-off (2 s … 30 s real time, 5 tries), as tenacity does in those collectors. It stores nothing: it measures API
time, not a database.

    python -m local.baseline_collector --sandbox-url http://127.0.0.1:PORT --months 2026-01 2026-02 --speedup 10

(the token comes from the sandbox's `POST /__admin/issue_tokens`; or pass --api-base and --token).
"""
from __future__ import annotations

import argparse
import calendar
import collections
import dataclasses
import json
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

import requests

REAL_PAUSE_S = 0.35
PAGE_SIZE = 100


@dataclasses.dataclass
class BaselineResult:
    wall_s: float = 0.0
    requests: int = 0
    requests_by_kind: dict[str, int] = dataclasses.field(default_factory=dict)
    responses_429: int = 0
    nfe_listed: int = 0
    nfe_detailed: int = 0
    contacts: int = 0
    payment_forms: int = 0
    skus: int = 0
    skus_found: int = 0
    phase_s: dict[str, float] = dataclasses.field(default_factory=dict)
    errors: list[str] = dataclasses.field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def issue_token(sandbox_url: str, timeout_s: float = 30) -> str:
    response = requests.post(sandbox_url.rstrip("/") + "/__admin/issue_tokens", json={}, timeout=timeout_s)
    response.raise_for_status()
    return response.json()["access_token"]


def month_bounds(month: str) -> tuple[str, str]:
    year, mon = int(month[:4]), int(month[5:7])
    last = calendar.monthrange(year, mon)[1]
    return f"{year:04d}-{mon:02d}-01 00:00:00", f"{year:04d}-{mon:02d}-{last:02d} 23:59:59"


def _kind(path: str) -> str:
    if path == "/nfe":
        return "nfe_list"
    if path.startswith("/nfe/"):
        return "nfe_detail"
    if path.startswith("/contatos/"):
        return "contato"
    if path == "/produtos":
        return "produtos_list"
    if path.startswith("/produtos/"):
        return "produto"
    if path.startswith("/formas-pagamentos/"):
        return "forma_pagamento"
    return "other"


class Collector:
    """A client shaped like the public collectors: one session, a pause between calls, 429 → back-off."""

    def __init__(self, api_base: str, token: str, speedup: float = 1.0, pause_s: float | None = None,
                 pacing: str = "sleep", timeout_s: float = 30.0):
        self.api_base = api_base.rstrip("/")
        self.speedup = float(speedup)
        self.pause_s = (REAL_PAUSE_S if pause_s is None else pause_s) / self.speedup
        if pacing not in ("sleep", "interval"):
            raise ValueError("pacing is 'sleep' (pause after each answer) or 'interval' (min. gap between starts)")
        self.pacing = pacing
        self.timeout_s = timeout_s
        self.session = requests.Session()
        self.session.headers.update({"Authorization": f"Bearer {token}", "Accept": "application/json"})
        self.by_kind: collections.Counter[str] = collections.Counter()
        self.throttled = 0
        self._last_start = 0.0
        self._last_end = 0.0

    def _pace(self) -> None:
        now = time.monotonic()
        if self.pacing == "interval":
            wait = self._last_start + self.pause_s - now
        else:
            wait = (self._last_end + self.pause_s - now) if self._last_end else 0.0
        if wait > 0:
            time.sleep(wait)

    def get(self, path: str, params: Any = None, not_found_ok: bool = False) -> Any:
        for attempt in range(5):
            self._pace()
            self._last_start = time.monotonic()
            try:
                response = self.session.get(self.api_base + path, params=params, timeout=self.timeout_s)
            finally:
                self._last_end = time.monotonic()
            self.by_kind[_kind(path)] += 1
            if response.status_code == 429:
                self.throttled += 1
                time.sleep(min(30.0, 2.0 * 2 ** attempt) / self.speedup)
                continue
            if response.status_code == 404 and not_found_ok:
                return None
            response.raise_for_status()
            return response.json()
        raise RuntimeError(f"GET {path}: still 429 after 5 tries")

    def close(self) -> None:
        self.session.close()


def collect(collector: Collector, months: Iterable[str], page_size: int = PAGE_SIZE,
            progress: Callable[[str], None] | None = None) -> BaselineResult:
    """List → details → contacts → payment forms → products, sequentially. Stores nothing."""
    result = BaselineResult()
    say = progress or (lambda _m: None)
    started = time.monotonic()

    # 1. Listing: every month, both passes (Bling leaves cancelled invoices out of the default listing).
    ids: list[int] = []
    seen: set[int] = set()
    for month in months:
        first, last = month_bounds(month)
        for situacao in (None, 2):
            page = 1
            while True:
                params = {"tipo": "1", "pagina": str(page), "limite": str(page_size),
                          "dataEmissaoInicial": first, "dataEmissaoFinal": last}
                if situacao is not None:
                    params["situacao"] = str(situacao)
                data = (collector.get("/nfe", params) or {}).get("data") or []
                for item in data:
                    if isinstance(item, dict) and item.get("id") not in seen:
                        seen.add(item["id"])
                        ids.append(item["id"])
                if len(data) < page_size:
                    break
                page += 1
    result.nfe_listed = len(ids)
    result.phase_s["list"] = time.monotonic() - started
    say(f"baseline: listed {len(ids)} NF-e")

    # 2. Every detail.
    phase = time.monotonic()
    contacts: list[int] = []
    forms: list[int] = []
    skus: list[str] = []
    for nfe_id in ids:
        nfe = ((collector.get(f"/nfe/{nfe_id}", not_found_ok=True) or {}).get("data")) or {}
        if not nfe:
            result.errors.append(f"nfe {nfe_id}: no detail")
            continue
        result.nfe_detailed += 1
        contato = (nfe.get("contato") or {}).get("id")
        if contato and contato not in contacts:
            contacts.append(contato)
        for parcela in nfe.get("parcelas") or []:
            form = (parcela.get("formaPagamento") or {}).get("id")
            if form and form not in forms:
                forms.append(form)
        for item in nfe.get("itens") or []:
            sku = item.get("codigo")
            if sku not in (None, "") and str(sku).strip() and str(sku) not in skus:
                skus.append(str(sku))
    result.phase_s["detail"] = time.monotonic() - phase
    say(f"baseline: {result.nfe_detailed} details; {len(contacts)} contacts, {len(forms)} payment forms, "
        f"{len(skus)} SKUs to fetch")

    # 3. Contacts, payment forms, products (one SKU per lookup, as the simple collectors do).
    phase = time.monotonic()
    for contact_id in contacts:
        collector.get(f"/contatos/{contact_id}", not_found_ok=True)
    result.contacts = len(contacts)
    for form_id in forms:
        collector.get(f"/formas-pagamentos/{form_id}", not_found_ok=True)
    result.payment_forms = len(forms)
    result.phase_s["contacts+forms"] = time.monotonic() - phase
    phase = time.monotonic()
    for sku in skus:
        data = (collector.get("/produtos", [("codigos[]", sku), ("criterio", "5")]) or {}).get("data") or []
        if any(isinstance(p, dict) and p.get("codigo") == sku for p in data):
            result.skus_found += 1
    result.skus = len(skus)
    result.phase_s["products"] = time.monotonic() - phase

    result.wall_s = time.monotonic() - started
    result.requests_by_kind = dict(collector.by_kind)
    result.requests = sum(collector.by_kind.values())
    result.responses_429 = collector.throttled
    return result


def run_baseline(api_base: str, token: str, months: Iterable[str], speedup: float = 1.0,
                 pause_s: float | None = None, pacing: str = "sleep",
                 progress: Callable[[str], None] | None = None) -> BaselineResult:
    collector = Collector(api_base, token, speedup=speedup, pause_s=pause_s, pacing=pacing)
    try:
        return collect(collector, list(months), progress=progress)
    finally:
        collector.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.baseline_collector", description=__doc__.split("\n")[0])
    parser.add_argument("--sandbox-url", help="sandbox base URL: API base and a token from /__admin/issue_tokens")
    parser.add_argument("--api-base", help="Bling API base (default <sandbox-url>/Api/v3)")
    parser.add_argument("--token", help="access token (default: issued by the sandbox)")
    parser.add_argument("--months", nargs="+", required=True, help="YYYY-MM ...")
    parser.add_argument("--speedup", type=float, default=1.0, help="divide the pause and back-off by this")
    parser.add_argument("--pause", type=float, default=REAL_PAUSE_S, help="real-time pause between calls, s")
    parser.add_argument("--pacing", choices=("sleep", "interval"), default="sleep")
    args = parser.parse_args(argv)
    if not args.api_base and not args.sandbox_url:
        parser.error("give --sandbox-url or --api-base with --token")
    api_base = args.api_base or args.sandbox_url.rstrip("/") + "/Api/v3"
    token = args.token or issue_token(args.sandbox_url)
    result = run_baseline(api_base, token, args.months, speedup=args.speedup, pause_s=args.pause,
                          pacing=args.pacing, progress=lambda m: print(m, file=sys.stderr))
    print(json.dumps(result.to_json(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
