"""Entry point of the local Argilla server's processes; run by the SERVER virtualenv's python.

    python annotators/launch.py serve --host 127.0.0.1 --port 6900 --credentials HOME/credentials.json
    python annotators/launch.py worker

annotators/local_server.py starts both with the environment set (ARGILLA_HOME_PATH, ARGILLA_DATABASE_URL,
ARGILLA_REDIS_URL, TMPDIR, ...). Both register the SQLite search engine before argilla_server reads its
settings. `serve` migrates the database and creates the workspace and users from the credentials file
in this one process (each argilla_server CLI call costs ~15 s of imports), then serves uvicorn.

This runs as a script, not as `annotators.launch`, so the package's __init__ (main-venv code) never runs here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from pathlib import Path

os.environ.setdefault("ARGILLA_SEARCH_ENGINE", "sqlite")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

# A sibling file (this runs as a script); importing it registers the engine, so after the environment.
import search_engine


def serve(host: str, port: int, credentials: Path) -> None:
    migrate()
    asyncio.run(bootstrap(json.loads(credentials.read_text())))
    import uvicorn

    print(f"argilla: serving http://{host}:{port} with the {search_engine.ENGINE_NAME} search engine", flush=True)
    uvicorn.run("argilla_server:app", host=host, port=port, access_log=False)


def migrate() -> None:
    from argilla_server.cli.database.migrate import migrate_db

    migrate_db(revision="head")


async def bootstrap(credentials: dict) -> None:
    """Create (or bring up to date) the workspace and the users; idempotent. Never prints secrets."""
    from argilla_server.contexts import accounts
    from argilla_server.database import AsyncSessionLocal
    from argilla_server.models import User, Workspace, WorkspaceUser

    async with AsyncSessionLocal() as db:
        name = credentials["workspace"]
        workspace = await Workspace.get_by(db, name=name) or await accounts.create_workspace(db, {"name": name})
        for spec in credentials["users"]:
            user = await accounts.get_user_by_username(db, spec["username"])
            if user is None:
                user = await User.create(
                    db,
                    first_name=spec["username"],
                    username=spec["username"],
                    role=spec["role"],
                    api_key=spec["api_key"],
                    password_hash=accounts.hash_password(spec["password"]),
                )
            elif (user.api_key, user.role) != (spec["api_key"], spec["role"]) or not accounts.verify_password(
                spec["password"], user.password_hash
            ):  # the credentials file was re-made: the file wins
                await user.update(
                    db,
                    api_key=spec["api_key"],
                    role=spec["role"],
                    password_hash=accounts.hash_password(spec["password"]),
                )
            if await WorkspaceUser.get_by(db, workspace_id=workspace.id, user_id=user.id) is None:
                await WorkspaceUser.create(db, workspace_id=workspace.id, user_id=user.id)
            print(f"argilla: user {spec['username']!r} ({spec['role']}) ready in workspace {name!r}", flush=True)


def worker() -> None:
    """One rq worker (2 cores here); it forks a work horse per job, which inherits the registered engine."""
    from argilla_server.jobs.queues import DEFAULT_QUEUE, HIGH_QUEUE, REDIS_CONNECTION
    from rq import Worker

    Worker([HIGH_QUEUE, DEFAULT_QUEUE], connection=REDIS_CONNECTION).work()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="migrate, bootstrap users, then serve the API and UI")
    serve_parser.add_argument("--host", default="127.0.0.1")
    serve_parser.add_argument("--port", type=int, default=6900)
    serve_parser.add_argument("--credentials", type=Path, required=True, help="JSON file: workspace and users")
    commands.add_parser("worker", help="run the rq worker (dataset status updates, webhooks)")
    args = parser.parse_args()
    if args.command == "serve":
        serve(args.host, args.port, args.credentials)
    else:
        worker()


if __name__ == "__main__":
    main()
