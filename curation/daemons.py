"""Detached local services (the demo's Argilla, a Prefect server): start, find, wait for, stop.

Every process is started in its own session with stdout/stderr in `<home>/logs/<name>.log` (0600)
and its pid in `<home>/run/<name>.pid`, next to the process's start time (from /proc). A pid whose
process started at another time is a reused pid, never signalled. (Checking the environment or the
command line instead was flaky: Redis rewrites both when it sets its process title.)
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

HOST = "127.0.0.1"


def free_ports(count: int) -> list[int]:
    """`count` distinct free loopback ports (all held open together while the OS picks them)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind((HOST, 0))
        return [sock.getsockname()[1] for sock in sockets]


def require_free_port(port: int) -> None:
    with socket.socket() as sock:
        if sock.connect_ex((HOST, port)) == 0:
            raise RuntimeError(f"port {port} on {HOST} is taken by another program: choose another --port")


class Daemons:
    """The processes of one service whose state lives under `home`; `what` names it in errors."""

    def __init__(self, home: Path, what: str):
        self.home, self.what = home, what

    def spawn(self, name: str, command: list[str], env: dict[str, str], cwd: Path | None = None) -> None:
        """Start a detached process (own session: it outlives this one) logging to logs/<name>.log."""
        for folder in ("logs", "run"):
            (self.home / folder).mkdir(parents=True, exist_ok=True)
        # 0600: a failing server may print secrets (a Redis URL with its password).
        log_fd = os.open(self.home / "logs" / f"{name}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(log_fd, "ab") as log:
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                       env=env, cwd=cwd or self.home, start_new_session=True)
        (self.home / "run" / f"{name}.pid").write_text(f"{process.pid} {_start_time(process.pid)}")

    def pid(self, name: str) -> int | None:
        """The pid of our running process `name`, or None."""
        pid_file = self.home / "run" / f"{name}.pid"
        if not pid_file.exists():
            return None
        pid, _, started = pid_file.read_text().partition(" ")
        return int(pid) if alive(int(pid)) and _start_time(int(pid)) == started.strip() else None

    def stop(self, name: str, timeout: float = 30) -> None:
        """SIGTERM the process's whole group (servers start workers of their own), SIGKILL after `timeout`."""
        pid = self.pid(name)
        if pid:
            _signal_group(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if alive(pid):
                _signal_group(pid, signal.SIGKILL)
        (self.home / "run" / f"{name}.pid").unlink(missing_ok=True)

    def wait(self, name: str, ready: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if not self.pid(name):
                raise RuntimeError(f"{self.what} {name} exited during start-up:\n{self.log_tail(name)}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.what} {name} not ready after {timeout:.0f} s:\n{self.log_tail(name)}")
            time.sleep(0.25)

    def answers(self, name: str, url: str) -> bool:
        """Our process `name` runs and `url` answers 200."""
        if not self.pid(name):
            return False
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def log_tail(self, name: str, lines: int = 30) -> str:
        log = self.home / "logs" / f"{name}.log"
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else ""


def _signal_group(pid: int, sig: int) -> None:
    """Our daemons lead their own session, so their group id is their pid."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig) if os.getpgid(pid) == pid else os.kill(pid, sig)


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot ("" where there is no /proc to ask)."""
    try:  # the command name may hold spaces and parentheses: split after its closing one
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except OSError:
        return ""


def alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):  # our own child that exited: reap it
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):  # an exited process nobody reaped yet (a zombie) is not alive
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True
