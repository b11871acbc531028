"""The pipeline's functions as local processes: one `functions-framework` per function, on a free port."""
from __future__ import annotations

import os
import shutil
import sys
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Self

from local.processes import ManagedProcess, free_port, wait_until
from local.stack.base import HOST, REPO_ROOT, ChildProcessComponent, MissingDependency


def venv_bin(name: str) -> str:
    """A console script next to the running interpreter (the project's .venv), else the repo's .venv, else PATH."""
    for candidate in (Path(sys.executable).parent / name, REPO_ROOT / ".venv/bin" / name):
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if not found:
        raise MissingDependency(f"{name} not found: run `make setup`")
    return found


class FunctionServer(ChildProcessComponent):
    """`functions-framework --target <entry> --source <file> --signature-type <type>` on a free port."""

    def __init__(self, name: str, entry_point: str, signature_type: str, log_path: Path,
                 source: Path | None = None, port: int | None = None, env: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.entry_point = entry_point
        self.signature_type = signature_type
        self.source = Path(source) if source else REPO_ROOT / "functions" / name / "main.py"
        self.port = port or free_port()
        self.log_path = Path(log_path)
        self.extra_env = dict(env or {})
        self.process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def launch(self) -> Self:
        if not self.source.exists():
            raise FileNotFoundError(f"function source {self.source} does not exist")
        argv = [venv_bin("functions-framework"), "--target", self.entry_point, "--source", str(self.source),
                "--signature-type", self.signature_type, "--host", HOST, "--port", str(self.port)]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.extra_env}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), self.extra_env.get("PYTHONPATH", "")) if p)
        self.process = ManagedProcess(f"fn-{self.name}", argv, self.log_path, env=env, cwd=REPO_ROOT).start()
        return self

    def wait_ready(self, timeout_s: float = 60) -> None:
        """Ready = it answers HTTP (any status), twice in a row: an open port alone was seen to refuse the next
        request right after a restart, while the server was still coming up."""
        answers: list[bool] = []

        def answers_http() -> bool:
            with urllib.request.urlopen(self.url + "/__ready", timeout=2) as _:
                pass
            return True

        def ready() -> bool:
            try:
                answers.append(answers_http())
            except urllib.error.HTTPError:
                answers.append(True)  # a 4xx/5xx is an answer: the server is up
            except OSError:
                answers.clear()
                return False
            return len(answers) >= 2

        wait_until(ready, timeout_s, f"function {self.name} on port {self.port}", alive=self._exit_problem)


def function_servers(names: Iterable[str], extra: Mapping[str, tuple[str, str, str | Path]],
                     logs: Path) -> dict[str, FunctionServer]:
    """A FunctionServer per name of shared.topology.ALL_FUNCTIONS (its entry point; http or cloudevent as the
    topology says; functions/<name>/main.py) plus extra {name: (entry_point, signature_type, source)}, each
    logging to logs/<name>.log. Not started: their ports are known before anything runs."""
    from shared import topology

    specs: dict[str, tuple[str, str, Path]] = {}
    for name in names:
        kind = "http" if name in topology.HTTP_FUNCTIONS else "cloudevent"
        specs[name] = (topology.ALL_FUNCTIONS[name], kind, REPO_ROOT / "functions" / name / "main.py")
    for name, (entry, kind, source) in extra.items():
        specs[name] = (entry, kind, Path(source))
    return {name: FunctionServer(name, entry, kind, logs / f"{name}.log", source=source)
            for name, (entry, kind, source) in specs.items()}
