"""`curate argilla up | down | status`: a local Argilla server for the demo (see annotators/local_server.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from annotators.local_server import LocalArgilla, default_home

argilla_app = typer.Typer(
    help=(
        "Run a real Argilla 2.8 server on this machine (loopback only): SQLite instead of Elasticsearch, "
        "a local Redis, its own virtualenv (made on first use). To use a remote Argilla instead, set "
        "ARGILLA_API_URL and ARGILLA_API_KEY and skip these commands."
    ),
    no_args_is_help=True,
)

HomeOption = Annotated[
    Path | None,
    typer.Option(
        "--home",
        help="Folder for the server's database, logs and credentials "
        "(default: $CURATION_HOME/argilla, else ~/.cache/curation/argilla)",
    ),
]


@argilla_app.command()
def up(
    home: HomeOption = None,
    port: Annotated[
        int | None,
        typer.Option("--port", help="HTTP port of the API and web UI; Redis takes port + 1 (default: the port "
                     "this home used last, else 6900)"),
    ] = None,
    annotator: Annotated[
        list[str] | None,
        typer.Option("--annotator", help="Annotator username to create (repeat for several; default: annotator)"),
    ] = None,
) -> None:
    """Start the server, its Redis and its worker (harmless when already running); print where to log in."""
    info = LocalArgilla(home, port=port, annotators=annotator or ["annotator"]).up()
    _print(info)
    typer.echo(f"Log in at {info['url']} as any of: {', '.join(info['users'])}")
    typer.echo(f"Passwords and API keys: {info['credentials']} (readable by you only)")


@argilla_app.command()
def down(home: HomeOption = None) -> None:
    """Stop the server, worker and Redis; the datasets stay in the home folder for the next `up`."""
    LocalArgilla(home).down()
    typer.echo(f"Argilla stopped; data kept in {home or default_home()}")


@argilla_app.command()
def status(home: HomeOption = None) -> None:
    """Say whether the server answers, where, and which of its processes run. Exit code 1 when it is down."""
    info = LocalArgilla(home).status()
    _print(info)
    raise typer.Exit(0 if info["running"] else 1)


def _print(info: dict) -> None:
    typer.echo(f"Argilla {'running' if info['running'] else 'NOT running'} at {info['url']}")
    typer.echo(f"  home: {info['home']}  (logs in {info['logs']})")
    processes = ", ".join(f"{name}={pid or 'stopped'}" for name, pid in info["processes"].items())
    typer.echo(f"  processes: {processes}")
