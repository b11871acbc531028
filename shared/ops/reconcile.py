"""Reconciliation: does PostgreSQL hold every outgoing NF-e that Bling lists, with the same situação?

    python -m shared.ops.reconcile --month 2026-01 [--account lojas-stilli]
    python -m shared.ops.reconcile --start 2021-01-01 --end 2021-12-31 [--repair] [--json]

Each account's schema is compared with that account's Bling (its own token): `--account` names one, the default
is every active account.

For each month window it lists Bling's ids (both passes, like the lister, costing list calls only) and compares
them with the invoices stored with an emission date in that window: missing (listed, not stored), unexpected
(stored, not listed: deleted in Bling, or its date changed) and situação differences. Then quality checks over
the same invoices: items whose NF-e is missing, contacts not resolved, SKUs neither resolved nor recorded as
unknown, payment forms not resolved, and invoices whose parcelas do not add up to valorNota (flagged, not
"fixed": freight, discounts and taxes make honest differences possible). A missing invoice that the pipeline gave
up on (its detail kept failing until the last delivery attempt) is also listed under failed_in_audit with the
error the audit recorded, so the report says why it is missing.

--repair publishes what is missing to the pipeline's topics (detail batches for missing or changed invoices,
enrichment for unresolved references); the functions then load them as usual. Exit status 1 when any gap remains.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import sys
from typing import Any

from shared import audit, listing, log, topology
from shared.account_registry import AccountStatus
from shared.db import SchemaDb
from shared.deps import Account, Deps
from shared.messages import EnrichRequest, NfeBatch, NoteRef, Window
from shared.ops import account_arg
from shared.schedule import parse_schedule_request, split_into_windows


@dataclasses.dataclass
class WindowReport:
    window: str
    account: str = ""
    listed: int = 0
    stored: int = 0
    missing: list[int] = dataclasses.field(default_factory=list)
    unexpected: list[int] = dataclasses.field(default_factory=list)
    situacao_differs: list[dict[str, int]] = dataclasses.field(default_factory=list)
    items_without_nfe: int = 0
    unresolved_contacts: list[int] = dataclasses.field(default_factory=list)
    unresolved_skus: list[str] = dataclasses.field(default_factory=list)
    unresolved_payment_forms: list[int] = dataclasses.field(default_factory=list)
    payments_differ_from_total: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    failed_in_audit: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # missing ones only

    @property
    def gaps(self) -> int:
        return (len(self.missing) + len(self.unexpected) + len(self.situacao_differs) + self.items_without_nfe
                + len(self.unresolved_contacts) + len(self.unresolved_skus) + len(self.unresolved_payment_forms))


def bling_ids(deps: Deps, account: Account, window: Window) -> dict[int, int]:
    settings = deps.settings
    pages = listing.WindowListing(window, listing.nfe_page_fetcher(account.client), listing.MemoryCheckpoints(),
                                  settings.list_page_size, settings.list_page_cap)
    return {n.id: n.situacao for notes in pages for n in notes}


def stored_ids(database: SchemaDb, window: Window, tz: str) -> dict[int, int]:
    rows = database.fetch_all("""SELECT id, situacao FROM nfe
                           WHERE (data_emissao AT TIME ZONE %s)::date BETWEEN %s AND %s""",
                        (tz, window.start, window.end))
    return {r[0]: r[1] for r in rows}


def quality(database: SchemaDb, report: WindowReport, ids: list[int]) -> None:
    if not ids:
        return
    report.items_without_nfe = database.fetch_all(
        "SELECT count(*) FROM nfe_item i WHERE i.nfe_id = ANY(%s) AND NOT EXISTS "
        "(SELECT 1 FROM nfe n WHERE n.id = i.nfe_id)", (ids,))[0][0]
    report.unresolved_contacts = [r[0] for r in database.fetch_all(
        "SELECT DISTINCT n.contato_id FROM nfe n LEFT JOIN contato c ON c.id = n.contato_id "
        "WHERE n.id = ANY(%s) AND n.contato_id IS NOT NULL AND c.id IS NULL ORDER BY 1", (ids,))]
    report.unresolved_skus = [r[0] for r in database.fetch_all(
        "SELECT DISTINCT i.codigo FROM nfe_item i LEFT JOIN produto_sku s ON s.codigo = i.codigo "
        "WHERE i.nfe_id = ANY(%s) AND i.codigo IS NOT NULL AND s.codigo IS NULL ORDER BY 1", (ids,))]
    report.unresolved_payment_forms = [r[0] for r in database.fetch_all(
        "SELECT DISTINCT p.forma_pagamento_id FROM nfe_parcela p JOIN forma_pagamento f "
        "ON f.id = p.forma_pagamento_id WHERE p.nfe_id = ANY(%s) AND NOT f.encontrada ORDER BY 1", (ids,))]
    report.payments_differ_from_total = [
        {"nfe_id": r[0], "valor_nota": str(r[1]), "soma_parcelas": str(r[2])} for r in database.fetch_all(
            "SELECT n.id, n.valor_nota, sum(p.valor) FROM nfe n JOIN nfe_parcela p ON p.nfe_id = n.id "
            "WHERE n.id = ANY(%s) GROUP BY n.id, n.valor_nota HAVING sum(p.valor) <> n.valor_nota ORDER BY 1",
            (ids,))]


def reconcile_window(deps: Deps, account: Account, window: Window) -> tuple[WindowReport, dict[int, int]]:
    in_bling, in_db = bling_ids(deps, account, window), stored_ids(account.db, window, deps.settings.timezone)
    report = WindowReport(window=window.key, account=account.account_id, listed=len(in_bling), stored=len(in_db))
    report.missing = sorted(set(in_bling) - set(in_db))
    report.unexpected = sorted(set(in_db) - set(in_bling))
    report.situacao_differs = [{"nfe_id": i, "bling": in_bling[i], "stored": in_db[i]}
                               for i in sorted(set(in_bling) & set(in_db)) if in_bling[i] != in_db[i]]
    quality(account.db, report, sorted(set(in_db) | set(in_bling)))
    report.failed_in_audit = failed_in_audit(account.db, report.missing)
    return report, in_bling


def failed_in_audit(database: SchemaDb, nfe_ids: list[int]) -> list[dict[str, Any]]:
    """The latest audit row of each id whose latest outcome is 'failed': which run gave up on it, and why."""
    if not nfe_ids:
        return []
    rows = database.fetch_all("""SELECT nfe_id, run_id, detalhe, atualizado_em FROM (
                               SELECT DISTINCT ON (nfe_id) nfe_id, run_id, resultado, detalhe, atualizado_em
                               FROM etl_window_nfe WHERE nfe_id = ANY(%s)
                               ORDER BY nfe_id, atualizado_em DESC) latest
                           WHERE resultado = 'failed' ORDER BY nfe_id""", (nfe_ids,))
    return [{"nfe_id": r[0], "run_id": r[1], "detalhe": r[2], "em": r[3].isoformat()} for r in rows]


def repair(deps: Deps, account: Account, window: Window, report: WindowReport, in_bling: dict[int, int]) -> int:
    settings = deps.settings
    name = account.account_id
    to_load = [NoteRef(i, in_bling[i]) for i in report.missing] + [
        NoteRef(d["nfe_id"], d["bling"]) for d in report.situacao_differs]
    published = 0
    if to_load:
        audit.ensure_window(account.db, window)
        audit.record_listed(account.db, window, to_load)
        payloads = [NfeBatch(window.run_id, window.key, tuple(b), name).to_json()
                    for b in listing.batches(to_load, settings.ids_per_message)]
        published += len(deps.publish_json(topology.NFE.topic, payloads, account=name))
    if report.unresolved_contacts or report.unresolved_skus:
        request = EnrichRequest(window.run_id, tuple(report.unresolved_contacts), tuple(report.unresolved_skus), name)
        published += len(deps.publish_json(topology.ENRICH.topic, [request.to_json()], account=name))
    return published


def accounts_to_reconcile(deps: Deps, requested: str | None) -> list[str]:
    """`requested` (any registered account, paused ones too), or every active account; ValueError if none."""
    records = deps.accounts.all(fresh=True)
    if requested:
        if requested not in records:
            raise ValueError(f"account {requested!r} is not connected to this deployment")
        return [requested]
    active = sorted(a for a, r in records.items() if r.status is AccountStatus.ACTIVE)
    if not active:
        raise ValueError("no account is active: nothing to reconcile (python -m shared.ops.accounts list)")
    return active


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--month")
    parser.add_argument("--start")
    parser.add_argument("--end")
    parser.add_argument("--repair", action="store_true", help="publish what is missing to the pipeline")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--account", type=account_arg, help="one account (default: every active account)")
    args = parser.parse_args(argv)
    deps = Deps.from_environment()  # the composition root of this command
    try:
        return _run(deps, args)
    finally:
        deps.close()


def _run(deps: Deps, args: argparse.Namespace) -> int:
    body = {"month": args.month} if args.month else {"start": args.start, "end": args.end}
    request = parse_schedule_request(json.dumps(body).encode(), deps.settings)
    run_id = f"reconcile-{datetime.datetime.now(tz=datetime.UTC):%Y%m%dT%H%M%S}"
    try:
        account_ids = accounts_to_reconcile(deps, args.account)
    except ValueError as exc:  # exit 2: not a gap (1), a command that cannot run
        print(f"reconcile: {exc}", file=sys.stderr)
        return 2
    reports = []
    for account_id in account_ids:
        account = deps.account(account_id)
        with log.bind(function="reconcile", run_id=run_id, account=account_id):
            for window in split_into_windows(request, run_id, account_id):
                with log.bind(window=window.key):
                    report, in_bling = reconcile_window(deps, account, window)
                    if args.repair and report.gaps:
                        log.info("repair published", messages=repair(deps, account, window, report, in_bling))
                    reports.append(report)
    if args.json:
        print(json.dumps([dataclasses.asdict(r) | {"gaps": r.gaps} for r in reports], indent=2))
    else:
        print(f"{'account':<22}{'window':<24}{'bling':>7}{'stored':>8}{'missing':>9}{'unexpected':>11}"
              f"{'situacao':>9}{'contacts?':>10}{'skus?':>7}{'pay≠total':>10}{'failed':>8}")
        for r in reports:
            print(f"{r.account:<22}{r.window:<24}{r.listed:>7}{r.stored:>8}{len(r.missing):>9}"
                  f"{len(r.unexpected):>11}{len(r.situacao_differs):>9}{len(r.unresolved_contacts):>10}{len(r.unresolved_skus):>7}"
                  f"{len(r.payments_differ_from_total):>10}{len(r.failed_in_audit):>8}")
    return 1 if any(r.gaps for r in reports) else 0


if __name__ == "__main__":
    sys.exit(main())
