"""`curate serve CONFIG`: the four flows as Prefect deployments with the config's cron schedules,
served from this process (runs start as subprocesses; stop with Ctrl-C).

Each deployment takes the config path as its parameter, allows one run at a time, and every flow
also holds its run directory's lock (`flows.locks`), so two deployments never write one run at once.
"""

from __future__ import annotations

from pathlib import Path

from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron

from curation.config import load_config
from flows.al_round import al_round
from flows.annotation import harvest
from flows.curate import curate
from flows.export import mix_and_export

FLOWS = {"curate": (curate, {}), "al_round": (al_round, {"push": True}), "harvest": (harvest, {}),
         "mix_and_export": (mix_and_export, {})}


def deployments(config_path: str | Path) -> list[RunnerDeployment]:
    config_path = str(Path(config_path).resolve())
    config = load_config(config_path)
    schedule = config.schedule
    name = schedule.name or Path(config.run_dir).name
    built = []
    for key, (flow, parameters) in FLOWS.items():
        cron = getattr(schedule, key)
        built.append(flow.to_deployment(
            name=name, schedules=[Cron(cron, timezone=schedule.timezone)] if cron else None,
            parameters={"config_path": config_path, **parameters}, concurrency_limit=1,
            tags=["curation", f"run:{name}"], description=f"{flow.description or flow.name} ({config_path})"))
    return built
