"""Reading the log files of a running stack: every process writes logs/<name>.log; the functions write JSON lines."""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any


def read_logs(paths: Mapping[str, Path], names: Iterable[str] | None = None) -> str:
    """The text of the named logs (all when names is None), in name order; absent files are skipped."""
    wanted = set(names) if names is not None else set(paths)
    return "\n".join(p.read_text(encoding="utf-8", errors="replace") for n, p in sorted(paths.items())
                     if n in wanted and p.exists())


def json_log_lines(paths: Mapping[str, Path], names: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """Every JSON object line of the named logs, each with `_function` (its log's name) added; other lines skipped."""
    out: list[dict[str, Any]] = []
    wanted = set(names) if names is not None else None
    for name, path in sorted(paths.items()):
        if (wanted is not None and name not in wanted) or not path.exists():
            continue
        for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
            line = raw.strip()
            if not line.startswith("{"):
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict):
                entry["_function"] = name
                out.append(entry)
    return out


def last_write(paths: Iterable[Path]) -> float:
    """Wall-clock time of the most recent write to any of the files (0.0 when none exists)."""
    times = [p.stat().st_mtime for p in paths if p.exists()]
    return max(times) if times else 0.0


def busiest(paths: Mapping[str, Path], now: float, most: int = 3) -> str:
    """'enrich wrote 0.4s ago, detail wrote 1.2s ago': the logs written last, for a timeout message."""
    latest = sorted(((p.stat().st_mtime, n) for n, p in paths.items() if p.exists()), reverse=True)[:most]
    return ", ".join(f"{n} wrote {now - t:.1f}s ago" for t, n in latest)
