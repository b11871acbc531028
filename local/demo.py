"""make demo: the whole pipeline on this machine, from the first OAuth consent to verified rows in PostgreSQL, for
two client companies served by one deployment (issue 14).

1. starts the local stack (PostgreSQL, Pub/Sub + Firestore emulators, a Bling sandbox serving two companies, each
   with its own `demo`-profile data set, authorization and 3 req/s limit, every function as a functions-framework
   process, push subscriptions with dead letters);
2. connects both accounts through the auth function exactly like the operator's browser would (/start?account=<slug>,
   the admin-key form with the stack's random key, that company's Bling authorize, /callback with the cookie /start
   set);
3. publishes {"month": "2026-01", "account": <slug>} and {"month": "2026-02", "account": <slug>} for both at once;
4. waits until the functions are quiet and neither account's schema is changing;
5. checks with local/verify.py that each account's schema holds exactly what its own company's truth says for those
   months, and that neither holds a row of the other;
6. prints a summary per account, leaves the data in .stack/demo/pgdata (open it with `make psql`; each account's
   tables are in its schema bling_<slug>) and stops everything.

Exit code 0 only when both verifications pass.
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from local import verify
from local.stack import STACK_DIR, LocalStack, MissingDependency
from local.stack.sandbox import AccountSpec
from shared.accounts import parse_account_id, schema_for

MONTHS = ("2026-01", "2026-02")
EXAMPLE_QUERIES = (
    ("NF-e per month and situação",
     "SELECT to_char(data_emissao AT TIME ZONE 'America/Sao_Paulo', 'YYYY-MM') AS mes, s.descricao, count(*), "
     "sum(valor_nota) FROM nfe JOIN nfe_situacao s ON s.codigo = nfe.situacao GROUP BY 1, 2 ORDER BY 1, 2;"),
    ("Best-selling products (authorized notes only)",
     "SELECT i.codigo, coalesce(p.nome, '(SKU unknown to Bling)') AS nome, sum(i.quantidade) AS qtd, "
     "sum(i.valor_total) AS total FROM nfe_item i JOIN nfe_autorizada n ON n.id = i.nfe_id LEFT JOIN produto_sku s "
     "ON s.codigo = i.codigo LEFT JOIN produto p ON p.id = s.produto_id "
     "GROUP BY 1, 2 ORDER BY total DESC LIMIT 10;"),
    ("Payments by form",
     "SELECT f.descricao, count(*) AS parcelas, sum(pa.valor) AS total FROM nfe_parcela pa "
     "JOIN forma_pagamento f ON f.id = pa.forma_pagamento_id GROUP BY 1 ORDER BY total DESC;"),
)


def log(message: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {message}", flush=True)


def table(rows: list[tuple[str, Any]], title: str) -> str:
    width = max(len(k) for k, _ in rows)
    lines = [title, "-" * (width + 14)]
    lines += [f"{k:<{width}}  {v:>10}" for k, v in rows]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m local.demo", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--accounts", default="loja-norte,loja-sul",
                        help="the client accounts to connect and backfill, comma-separated slugs")
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--seed", type=int, default=42, help="the first company's data seed (the next: +1, ...)")
    parser.add_argument("--rate", type=float, default=3.0, help="the sandbox's requests per second")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for the pipeline")
    parser.add_argument("--quiet", type=float, default=8.0, help="seconds without function logs = settled")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        accounts = [parse_account_id(a.strip()) for a in args.accounts.split(",") if a.strip()]
    except ValueError as exc:
        print(f"demo: --accounts: {exc}", file=sys.stderr)
        return 2
    started = time.monotonic()
    log("starting the local stack (PostgreSQL, Pub/Sub + Firestore emulators, Bling sandbox, functions)...")
    try:
        stack = LocalStack("demo", profile=args.profile, seed=args.seed, rate_per_s=args.rate,
                           latency_s=args.latency_ms / 1000.0, keep_pgdata=True,
                           sandbox_accounts=[AccountSpec(name, args.profile, seed=args.seed + i, rate_per_s=args.rate)
                                             for i, name in enumerate(accounts)])
        stack.start()
    except MissingDependency as exc:
        print(f"demo: missing system tool: {exc}", file=sys.stderr)
        return 2
    ok = False
    try:
        ok = run_demo(stack, args, accounts, started)
    except Exception as exc:  # noqa: BLE001 - report, stop the stack, exit non-zero
        log(f"FAILED: {type(exc).__name__}: {exc}")
        log(f"function logs: {stack.run_dir}/logs")
    finally:
        stack.stop()

    print()
    print(f"The data stays in {STACK_DIR / 'demo' / 'pgdata'} (server stopped). Query it with:")
    print("    make psql          # starts that cluster on a free port, opens psql, stops it when you quit")
    print(f"Each account's tables are in its own schema ({', '.join(schema_for(a) for a in accounts)}); in psql:")
    print(f"  SET search_path TO {schema_for(accounts[0])};")
    print("Example queries:")
    for title, sql in EXAMPLE_QUERIES:
        print(f"  -- {title}\n  {sql}")
    print()
    log("verification PASSED" if ok else "verification FAILED")
    return 0 if ok else 1


def run_demo(stack: LocalStack, args: argparse.Namespace, accounts: list[str], started: float) -> bool:
    """Steps 2 to 5 on a started stack; True when every account's schema equals its own company's truth."""
    sandbox = stack.sandbox
    if sandbox is None:  # LocalStack starts one unless told sandbox=False
        raise RuntimeError("the stack has no Bling sandbox")
    log(f"stack up in {stack.elapsed_s():.1f}s; logs in {stack.run_dir}/logs")
    for name, fn in stack.functions.items():
        log(f"  function {name:<10} {fn.url}")
    log(f"  Bling sandbox      {sandbox.api_base} (companies: {', '.join(sandbox.account_names())})")

    for account in accounts:
        log(f"connecting {account} like the operator: {stack.auth_url}/start?account={account} with the admin key "
            f"(in {stack.run_dir}/auth-admin-key) → that company's Bling authorize → callback")
        entry = _entry(stack.authorize(account=account), account)
        log(f"  {account}: status {entry.get('status')}, token stored {entry.get('token_stored')}, "
            f"expires {entry.get('expires_at')}")
        if not entry.get("token_stored") or entry.get("reauth_required"):
            raise RuntimeError(f"the auth function did not store a usable token for {account}: {entry}")

    truths = {account: verify.fetch_truth(sandbox.url, account=account) for account in accounts}
    sandbox.reset_stats()
    pipeline_start = time.monotonic()
    for month in MONTHS:
        for account in accounts:
            stack.publish("bling-schedule", {"month": month, "account": account})
            log(f"published {{\"month\": \"{month}\", \"account\": \"{account}\"}} to bling-schedule")
    log("waiting for the pipeline to settle (both accounts at once)...")
    wait_error = None
    try:
        verify.wait_for_accounts(stack, {schema_for(a): truths[a] for a in accounts}, MONTHS, quiet_s=args.quiet,
                                 timeout_s=args.timeout)
    except TimeoutError as exc:
        wait_error = exc
        log(f"WARNING: {exc}")
    pipeline_s = time.monotonic() - pipeline_start

    dead = {topic: len(msgs) for topic, msgs in stack.dead_letters(timeout_s=1).items() if msgs}
    errors = [e for e in stack.log_lines() if e.get("severity") in ("ERROR", "CRITICAL")]
    ok = wait_error is None
    for account in accounts:
        ok = _account_summary(stack, account, truths, pipeline_s) and ok
    ip = sandbox.stats()
    print(table([("API calls, both accounts", ip.get("requests_total", 0)),
                 ("token endpoint calls", ip.get("token_calls", 0)),
                 ("IP blocked", ip.get("ip_blocked", False)),
                 ("dead letters", sum(dead.values())), ("ERROR log lines", len(errors)),
                 ("pipeline seconds", f"{pipeline_s:.1f}"),
                 ("total seconds", f"{time.monotonic() - started:.1f}")], "The deployment"))
    if dead:
        print(f"dead letters by topic: {dead}")
    return ok


def _entry(status: dict[str, Any], account: str) -> dict[str, Any]:
    """`account`'s entry of the auth function's /status (a list of entries, each naming its account)."""
    return next((e for e in status.get("accounts", []) if e.get("account") == account), {})


def _account_summary(stack: LocalStack, account: str, truths: dict[str, dict[str, Any]], pipeline_s: float) -> bool:
    """Print one account's loaded counts and Bling calls; True when its schema equals its own truth, holds no row
    of another account and has no duplicate."""
    schema = schema_for(account)
    conn = stack.connect(account=account)
    try:
        report = verify.verify(conn, truths[account], MONTHS, schema=schema)
        duplicates = verify.duplicate_report(conn, schema=schema)
        foreign = {other: verify.foreign_rows(conn, truths[other], schema)
                   for other in truths if other != account}
        extra = db_extra_counts(conn)
    finally:
        conn.close()
    stats = stack.sandbox.stats(account=account) if stack.sandbox else {}
    counts = report.counts
    print()
    print(table([("NF-e (outgoing, incl. cancelled)", counts["nfe"]),
                 ("  of which cancelled", extra["cancelled"]),
                 ("item lines", counts["nfe_item"]), ("payments (parcelas)", counts["nfe_parcela"]),
                 ("payment forms", counts["forma_pagamento"]), ("contacts", counts["contato"]),
                 ("products", counts["produto"]), ("SKUs checked", counts["produto_sku"]),
                 ("  of which unknown to Bling", extra["unknown_skus"])],
                f"Account {account}: loaded into schema {schema}"))
    by_kind = [(f"  {k}", v) for k, v in sorted(stats.get("requests_by_kind", {}).items()) if v]
    print(table([("API calls (total)", stats.get("requests_total", 0)), *by_kind,
                 ("token endpoint calls", stats.get("token_calls", 0)),
                 ("429 responses", stats.get("responses_429", 0)),
                 ("max requests in any 1 s", stats.get("max_requests_in_any_1s", 0))],
                f"Account {account}: its Bling company, in {pipeline_s:.1f} s"))
    print(f"Account {account}: {report.summary()}")
    for d in duplicates:
        print(f"Account {account}: DUPLICATE: {d}")
    leaked = {other: rows for other, rows in foreign.items() if rows}
    if leaked:
        print(f"Account {account}: rows of another account: {leaked}")
    print()
    return report.ok and not duplicates and not leaked


def db_extra_counts(conn: verify.Connection) -> dict[str, int]:
    """The two counts the verification's table counts do not give: cancelled NF-e and SKUs unknown to Bling."""
    cur = conn.cursor()
    cur.execute("SELECT (SELECT count(*) FROM nfe WHERE situacao = 2), "
                "(SELECT count(*) FROM produto_sku WHERE NOT encontrado)")
    cancelled, unknown = cur.fetchone()
    conn.rollback()
    return {"cancelled": cancelled, "unknown_skus": unknown}


if __name__ == "__main__":
    sys.exit(main())
