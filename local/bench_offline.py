"""The bench parts that need no pipeline: cold start (import time of each entry point) and loading speed.

Cold start: each `functions/<name>/main.py` is imported by a fresh interpreter (the one running the bench, i.e. the
project's .venv) through importlib from its file, with the repository on sys.path, as functions-framework does.
The import is timed inside the child (perf_counter around exec_module); the child's whole life (interpreter start
+ import) is timed outside too. `-X importtime` of one extra run names the heaviest top-level imports.

Loading: N invoices (cloned from the sandbox's history dataset with new ids and access keys) upserted with
shared.nfe_store.upsert_nfe, one transaction per invoice through shared.db.Database.transaction, as the detail function
stores them, into a throwaway PostgreSQL cluster with the migrations applied.
"""
from __future__ import annotations

import contextlib
import copy
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent

_IMPORT_SNIPPET = r"""
import importlib.util, sys, time
sys.path.insert(0, sys.argv[1])
t = time.perf_counter()
spec = importlib.util.spec_from_file_location("main", sys.argv[2])
module = importlib.util.module_from_spec(spec)
sys.modules["main"] = module
spec.loader.exec_module(module)
print(f"IMPORT_S={time.perf_counter() - t:.6f}")
"""


def function_names() -> list[str]:
    from shared import topology

    return [n for n in topology.ALL_FUNCTIONS if (REPO_ROOT / "functions" / n / "main.py").exists()] + \
        [n for n in topology.ALL_FUNCTIONS if not (REPO_ROOT / "functions" / n / "main.py").exists()]


def _child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "FIRESTORE_EMULATOR", "PUBSUB_EMULATOR"))}
    env["PYTHONDONTWRITEBYTECODE"] = "0"
    return env


def _import_once(python: str, source: Path, importtime: bool = False) -> tuple[float, float, str]:
    argv = [python] + (["-X", "importtime"] if importtime else []) + ["-c", _IMPORT_SNIPPET, str(REPO_ROOT),
                                                                        str(source)]
    started = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, cwd="/tmp", env=_child_env(), timeout=120)
    total = time.perf_counter() - started
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"import of {source.relative_to(REPO_ROOT)} failed: {last}")
    line = next((x for x in proc.stdout.splitlines() if x.startswith("IMPORT_S=")), None)
    if line is None:
        raise RuntimeError(f"import of {source} printed no timing")
    return float(line.split("=", 1)[1]), total, proc.stderr


def heaviest_imports(importtime_stderr: str, top: int = 4) -> list[tuple[str, float]]:
    """Top-level (not nested) packages by cumulative import time, from `-X importtime` output, in seconds."""
    found: dict[str, float] = {}
    for line in importtime_stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        parts = line[len("import time:"):].split("|")
        if len(parts) != 3 or not parts[1].strip().isdigit():
            continue
        name = parts[2]
        stripped = name.lstrip()
        if len(name) - len(stripped) > 1:  # nested import: counted in its parent's cumulative time
            continue
        found[stripped.strip()] = max(found.get(stripped.strip(), 0.0), int(parts[1]) / 1e6)
    return sorted(found.items(), key=lambda kv: -kv[1])[:top]


def measure_coldstart(runs: int = 5, python: str | None = None,
                      progress: Callable[[str], None] = lambda _m: None) -> dict[str, Any]:
    python = python or sys.executable
    out: dict[str, Any] = {"runs": runs, "python": python, "functions": {}}
    # Warm the OS page cache and the .pyc files once, so the first function does not pay for everybody.
    for name in function_names():
        source = REPO_ROOT / "functions" / name / "main.py"
        if source.exists():
            with contextlib.suppress(Exception):  # a failing import is measured and reported below
                _import_once(python, source)
    for name in function_names():
        source = REPO_ROOT / "functions" / name / "main.py"
        entry: dict[str, Any] = {}
        if not source.exists():
            entry["error"] = f"functions/{name}/main.py does not exist"
        else:
            try:
                imports, totals = [], []
                for _ in range(runs):
                    import_s, total_s, _err = _import_once(python, source)
                    imports.append(import_s)
                    totals.append(total_s)
                _i, _t, stderr = _import_once(python, source, importtime=True)
                entry.update(import_median_s=statistics.median(imports), import_min_s=min(imports),
                             import_max_s=max(imports), process_median_s=statistics.median(totals),
                             imports_s=imports, heaviest=heaviest_imports(stderr))
            except Exception as exc:  # noqa: BLE001 - one broken function must not hide the others
                entry["error"] = str(exc)
        out["functions"][name] = entry
        progress(f"coldstart: {name}: " + (f"{entry['import_median_s']:.3f} s" if "import_median_s" in entry
                                            else entry["error"]))
    return out


# ------------------------------------------------------------------------------------------------ loading

def synth_invoices(n: int, seed: int = 42) -> tuple[list[dict[str, Any]], dict[int, dict[str, Any]]]:
    """n outgoing invoice details (cloned with new ids/keys from the history dataset) and the payment forms."""
    from local.sandbox.dataset import build_profile

    ds = build_profile("history", seed, 1.0)
    sources = [ds.nfe[i] for i in ds.outgoing_ids()]
    invoices = []
    for k in range(n):
        nfe = copy.deepcopy(sources[k % len(sources)])
        nfe["id"] = 90_000_000_000 + k
        nfe["numero"] = str(500_000 + k)
        chave = str(nfe.get("chaveAcesso") or "0" * 44)
        nfe["chaveAcesso"] = chave[:25] + f"{k:09d}" + chave[34:]
        invoices.append(nfe)
    return invoices, ds.payment_forms


def measure_loading(n: int, run_dir: Path, seed: int = 42,
                    progress: Callable[[str], None] = lambda _m: None) -> dict[str, Any]:
    from local.stack import PostgresCluster

    invoices, forms = synth_invoices(n, seed)
    rows_expected = sum(1 + len(i.get("itens") or []) + len(i.get("parcelas") or []) for i in invoices)
    cluster = PostgresCluster(run_dir / "pgdata-loading", run_dir / "logs/postgres-loading.log")
    saved_env = dict(os.environ)
    try:
        cluster.start()
        cluster.migrate()
        os.environ.update(cluster.env())
        os.environ.pop("CLOUD_SQL_INSTANCE", None)
        from shared import config, nfe_store
        from shared.db import Database

        config.reset_settings_cache()
        settings = config.get_settings()
        database = Database(settings)  # this measurement's own, closed before its cluster goes
        try:
            with database.transaction() as cur:  # the parcelas' foreign key needs the payment forms (enrich's job)
                for fid, form in forms.items():
                    cur.execute("INSERT INTO forma_pagamento (id, descricao, encontrada) VALUES (%s, %s, true) "
                                "ON CONFLICT (id) DO NOTHING", (fid, form.get("descricao")))
            progress(f"loading: upserting {n} invoices ({rows_expected} rows) into PostgreSQL ...")
            outcomes: dict[str, int] = {}
            started = time.perf_counter()
            for nfe in invoices:
                with database.transaction() as cur:
                    outcome = nfe_store.upsert_nfe(cur, nfe, settings.timezone, "bench-loading").outcome or "stale"
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
            elapsed = time.perf_counter() - started
            counts = {t: database.fetch_all(f"SELECT count(*) FROM {t}")[0][0]
                      for t in ("nfe", "nfe_item", "nfe_parcela")}
        finally:
            database.close()
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        try:
            from shared import config

            config.reset_settings_cache()
        except Exception:  # noqa: BLE001
            pass
        cluster.destroy()
    rows = sum(counts.values())
    return {"invoices": n, "seconds": elapsed, "rows": rows, "rows_expected": rows_expected, "counts": counts,
            "outcomes": outcomes, "invoices_per_s": n / elapsed, "rows_per_s": rows / elapsed,
            "items_per_invoice": counts["nfe_item"] / n, "parcelas_per_invoice": counts["nfe_parcela"] / n}
