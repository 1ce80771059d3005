"""`curate server up | down | status` and `curate serve CONFIG`: scheduled flows on a Prefect server."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from flows.server import PrefectServer

server_app = typer.Typer(
    help="Run a Prefect server on this machine (loopback only, SQLite, web UI included) for `curate serve`. "
         "To use a Prefect server or Prefect Cloud you already have, set PREFECT_API_URL and skip these commands.",
    no_args_is_help=True)

HomeOption = Annotated[Path | None, typer.Option(
    "--home", help="Folder for the server's database and log (default: $CURATION_HOME/prefect-server)")]


@server_app.command()
def up(home: HomeOption = None,
       port: Annotated[int | None, typer.Option(help="API and UI port (default: the last one used, else 4200)")]
       = None) -> None:
    """Start the server (harmless when it already runs) and print the PREFECT_API_URL to export."""
    info = PrefectServer(home, port).up()
    _print(info)
    typer.echo(f"export PREFECT_API_URL={info['api_url']}")


@server_app.command()
def down(home: HomeOption = None) -> None:
    """Stop the server; its database (deployments, runs, artifacts) stays for the next `up`."""
    PrefectServer(home).down()
    typer.echo("Prefect server stopped")


@server_app.command()
def status(home: HomeOption = None) -> None:
    """Say whether the server answers and where. Exit code 1 when it is down."""
    info = PrefectServer(home).status()
    _print(info)
    raise typer.Exit(0 if info["running"] else 1)


def _print(info: dict) -> None:
    typer.echo(f"Prefect server {'running' if info['running'] else 'NOT running'}: UI {info['ui']}, "
               f"API {info['api_url']}\n  home: {info['home']}  (log: {info['log']})")


def serve(config: Annotated[Path, typer.Argument(help="YAML config; its `schedule` section sets the crons")]) -> None:
    """Serve the curate, al-round, harvest and mix-and-export flows of CONFIG as Prefect deployments
    named after the run (or `schedule.name`), on the cron lines of its `schedule` section; runs start
    here as subprocesses until Ctrl-C. Trigger one by hand with
    `prefect deployment run curate/<name>`; watch them in the UI.

    Needs a Prefect server that outlives this process: `curate server up` and export the
    PREFECT_API_URL it prints (or point at your own server). One run at a time per deployment, and
    one flow at a time per run directory (a lock file in it)."""
    if not os.environ.get("PREFECT_API_URL"):
        typer.secho("PREFECT_API_URL is unset: run `curate server up` and export the URL it prints", fg="red",
                    err=True)
        raise typer.Exit(2)
    from prefect import serve as prefect_serve

    from flows.serve import deployments

    prefect_serve(*deployments(config))
