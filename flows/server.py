"""A Prefect server on this machine for scheduled flows: `curate server up | down | status`.

`prefect server start` (SQLite database under `<home>/prefect-home`, UI included) on loopback only,
detached, with its pid and log under `<home>` ($CURATION_HOME/prefect-server by default). Point
clients at it with `export PREFECT_API_URL=http://127.0.0.1:<port>/api`.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from curation.daemons import HOST, Daemons, require_free_port
from curation.encoder import curation_home

DEFAULT_PORT = 4200


class PrefectServer:
    def __init__(self, home: Path | None = None, port: int | None = None):
        self.home = Path(home or curation_home() / "prefect-server").resolve()
        state = self.home / "server.json"
        self.port = port or (json.loads(state.read_text())["port"] if state.exists() else DEFAULT_PORT)
        self.daemons = Daemons(self.home, "prefect")

    @property
    def api_url(self) -> str:
        return f"http://{HOST}:{self.port}/api"

    def up(self, timeout: float = 180) -> dict[str, Any]:
        """Start the server unless it runs; wait until its API answers."""
        if self.answers():
            return self.status()
        self.daemons.stop("server")  # running but not answering: stale
        require_free_port(self.port)
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "server.json").write_text(json.dumps({"port": self.port}))
        env = {**os.environ, "PREFECT_HOME": str(self.home / "prefect-home"), "PREFECT_SERVER_API_HOST": HOST,
               "PREFECT_SERVER_API_PORT": str(self.port), "PREFECT_UI_API_URL": self.api_url,
               "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}
        env.pop("PREFECT_API_URL", None)
        self.daemons.spawn("server", [sys.executable, "-m", "prefect", "server", "start"], env)
        self.daemons.wait("server", self.answers, timeout)
        return self.status()

    def down(self, timeout: float = 30) -> None:
        self.daemons.stop("server", timeout)

    def answers(self) -> bool:
        return self.daemons.answers("server", f"{self.api_url}/health")

    def status(self) -> dict[str, Any]:
        return {"running": self.answers(), "api_url": self.api_url, "ui": f"http://{HOST}:{self.port}",
                "pid": self.daemons.pid("server"), "home": str(self.home),
                "log": str(self.home / "logs" / "server.log")}
