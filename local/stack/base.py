"""What every component of the local stack shares: where things live, the host, run directories, the error for a
missing system tool, and the life of a component that is one child process."""
from __future__ import annotations

import abc
import datetime
import os
import shutil
import uuid
from pathlib import Path
from typing import Self

from local.processes import ManagedProcess

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
STACK_DIR = REPO_ROOT / ".stack"
DEFAULT_PROJECT = "demo-local"
# The pipeline account the local stack and the tests connect when they name none (issue 14: every deployment serves
# accounts; a single-account test runs against this one, its schema shared.accounts.schema_for(DEFAULT_ACCOUNT)).
DEFAULT_ACCOUNT = "loja-teste"
HOST = "127.0.0.1"


class MissingDependency(RuntimeError):
    """A system tool the stack needs is absent (tests skip on it outside CI and fail under CI=true)."""


def new_run_dir(run: str | None = None, base: Path = STACK_DIR, fresh: bool = True) -> Path:
    """.stack/<run>/ with logs/; a generated run name is unique (time, pid, counter)."""
    if run is None:
        run = f"{datetime.datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    path = base / run
    if fresh and path.exists():
        shutil.rmtree(path)
    (path / "logs").mkdir(parents=True, exist_ok=True)
    return path


class ChildProcessComponent(abc.ABC):
    """A component that is one child process: launch() starts it, wait_ready() polls it, stop() ends it by PID.

    Subclasses set self.process in launch() and implement wait_ready(); start() is both, for use on its own."""

    process: ManagedProcess | None = None

    @abc.abstractmethod
    def launch(self) -> Self:
        """Start the process and return at once (the stack launches everything, then waits for each)."""

    @abc.abstractmethod
    def wait_ready(self, timeout_s: float = 60) -> None:
        """Return once the process serves; TimeoutError after timeout_s, RuntimeError if it exited."""

    def start(self) -> Self:
        self.launch()
        self.wait_ready()
        return self

    def stop(self) -> None:
        if self.process:
            self.process.stop()

    def pids(self) -> set[int]:
        return {self.process.pid} if self.process and self.process.pid else set()

    def _exit_problem(self) -> str | None:
        """For wait_until(alive=...): why the launched process is gone (None while it runs or before launch)."""
        return self.process.exit_problem() if self.process else None
