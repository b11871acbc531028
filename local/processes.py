"""Small process helpers for the local stack: free ports, readiness polls, and child processes stopped by PID.

Every child runs in its own session (process group), so a Ctrl-C in the terminal does not reach it before we
stop it in order, and so stopping can fall back to killing the whole group (gunicorn workers, a JVM exec'd by a
launcher script) when the leader does not exit in time.
"""
from __future__ import annotations

import atexit
import contextlib
import os
import random
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Generic, Protocol, TypeVar

_EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def ephemeral_port_range() -> tuple[int, int]:
    """The ports the kernel gives outgoing connections (Linux's default where /proc does not say)."""
    try:
        low, high = (int(x) for x in _EPHEMERAL_RANGE_FILE.read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    return low, high


# Ports handed out below the ephemeral range: a port from bind(0) is in the range every outgoing connection takes
# its local port from, so a client connection could take it before the server started on it binds.
_LOWEST_PORT = 10_000
_PORT_TRIES = 200


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago, chosen at random below the ephemeral range."""
    low, _high = ephemeral_port_range()
    for _ in range(_PORT_TRIES if low - 1 > _LOWEST_PORT else 0):
        port = random.randint(_LOWEST_PORT, low - 1)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # no room below the range: the kernel's choice
        sock.bind(("127.0.0.1", 0))
        chosen: int = sock.getsockname()[1]
        return chosen


def port_is_open(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts TCP connections on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when a server could bind the port again: nobody listens on it (connections left in TIME_WAIT by the
    stopped server do not count, as servers bind with SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def pid_alive(pid: int) -> bool:
    """True when the process exists and is not a zombie (an exited daemon reparented to a non-reaping PID 1)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def wait_until(check: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.1,
               alive: Callable[[], str | None] | None = None) -> None:
    """Poll check() until it is true; raise TimeoutError naming `what`. alive() returns a reason to stop early."""
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(Exception):
            if check():
                return
        if alive is not None:
            problem = alive()
            if problem:
                raise RuntimeError(f"{what}: {problem}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not ready after {timeout_s:.0f}s")
        time.sleep(interval_s)


def http_ok(url: str, timeout_s: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            status: int = response.status
            return 200 <= status < 300
    except urllib.error.HTTPError:
        return False


def tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


class Stoppable(Protocol):
    def stop(self) -> None: ...


T = TypeVar("T", bound=Stoppable)


class StopAtExit(Generic[T]):
    """The things of one kind still running, stopped at interpreter exit (a script that forgot stop())."""

    def __init__(self) -> None:
        self._items: set[T] = set()
        self._lock = threading.Lock()
        atexit.register(self.stop_all)

    def add(self, item: T) -> None:
        with self._lock:
            self._items.add(item)

    def discard(self, item: T) -> None:
        with self._lock:
            self._items.discard(item)

    def stop_all(self) -> None:
        """Stop every registered item; one failing to stop does not keep the others running."""
        with self._lock:
            items = list(self._items)
        for item in items:
            with contextlib.suppress(Exception):
                item.stop()


_running: StopAtExit[ManagedProcess] = StopAtExit()
stop_all = _running.stop_all


class ManagedProcess:
    """A child process with its output in a log file, stopped by PID: SIGTERM, wait, then SIGKILL the group."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None,
                 cwd: str | os.PathLike[str] | None = None, stop_timeout_s: float = 10.0):
        self.name = name
        self.argv = list(argv)
        self.log_path = Path(log_path)
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.stop_timeout_s = stop_timeout_s
        self.popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab", buffering=0) as log:  # the child keeps its own copy of the descriptor
            self.popen = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                          env=self.env, cwd=self.cwd, start_new_session=True)
        _running.add(self)
        return self

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def exit_problem(self) -> str | None:
        """For wait_until(alive=...): why the process is gone, with the end of its log."""
        if self.popen is not None and self.popen.poll() is not None:
            return f"exited with code {self.popen.returncode}; log {self.log_path}:\n{tail(self.log_path)}"
        return None

    def stop(self) -> None:
        if self.popen is None:
            return
        popen, pid = self.popen, self.popen.pid
        if popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            try:
                popen.wait(timeout=self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                popen.wait(timeout=10)
        # Whatever the leader left behind in its own process group (gunicorn workers, a JVM): kill it too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        self.popen = popen  # keep it: pid stays readable for "nothing left running" checks
        _running.discard(self)


def run(argv: Sequence[str], env: Mapping[str, str] | None = None, timeout_s: float = 120.0,
        cwd: str | os.PathLike[str] | None = None, what: str | None = None) -> str:
    """Run a short command; raise RuntimeError with its output when it fails."""
    result = subprocess.run(list(argv), env=dict(env) if env is not None else None, cwd=cwd,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            timeout=timeout_s, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{what or argv[0]} failed (exit {result.returncode}): {' '.join(argv)}\n{result.stdout}")
    return result.stdout
