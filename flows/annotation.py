"""The `annotate` flow pushes a round's batch to Argilla; `harvest` pulls the answers back.

Both are idempotent: records are upserted by their stable ids and the answer log only grows, so
either can be rerun or scheduled as often as wanted. The API key comes from a Prefect Secret block
(`annotation.api_key: prefect-secret:NAME`) or an environment variable, and never reaches logs.
"""

from __future__ import annotations

import argilla as rg
import pyarrow.parquet as pq
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from annotators.harvest import harvest as harvest_answers
from annotators.push import connect, push_batch
from curation.active import read_batches, round_dir
from curation.config import CurateConfig, load_config
from flows.locks import run_dir_lock
from flows.secrets import read_secret


def argilla_client(config: CurateConfig) -> rg.Argilla:
    return connect(config.annotation, read_secret(config.annotation.api_key, "annotation.api_key"))


@task(retries=2, retry_delay_seconds=10)
def push_step(config_json: str, number: int) -> dict:
    config = CurateConfig.model_validate_json(config_json)
    batch = pq.read_table(round_dir(config, number) / "batch.parquet")
    return push_batch(argilla_client(config), config.annotation, batch, agent=f"student-round-{number:04d}")


@task(retries=2, retry_delay_seconds=10)
def harvest_step(config_json: str) -> dict:
    config = CurateConfig.model_validate_json(config_json)
    return harvest_answers(argilla_client(config), config, read_batches(config))


@flow(name="annotate", log_prints=True)
def annotate(config_path: str, number: int) -> dict:
    """Push round NUMBER's batch, with the student's suggestions, to the configured Argilla dataset."""
    config = load_config(config_path)
    with run_dir_lock(config):
        result = push_step(config.model_dump_json(), number)
    create_markdown_artifact(f"Round {number}: {result['pushed']} records pushed to Argilla dataset "
                             f"`{result['dataset']}`; {result['on_server']} of them are on the server.",
                             key=f"annotate-round-{number}")
    get_run_logger().info("round %d: %s", number, result)
    return result


def report_harvest(stats: dict) -> None:
    rows = [{"language": lang, **counts} for lang, counts in sorted(stats["per_language"].items())]
    create_table_artifact(rows or [{"language": "-"}], key="harvest-per-language",
                          description="answered records per language, by outcome")
    create_markdown_artifact(
        f"{stats['answers']} answers ({stats['new_answers']} new): {stats['counted']} counted, quarantined "
        f"{stats['quarantined'] or 'none'}. Records: {stats['records']}; {stats['awaiting']} of "
        f"{stats['pushed']} pushed await answers. Mean agreement where several answered: "
        f"{stats['mean_agreement'] if stats['mean_agreement'] is not None else 'n/a'}.", key="harvest")


@flow(name="harvest", log_prints=True)
def harvest(config_path: str) -> dict:
    """Pull every answer, merge the verified labels into the run, send disputed records to review."""
    config = load_config(config_path)
    with run_dir_lock(config):
        stats = harvest_step(config.model_dump_json())
    report_harvest(stats)
    get_run_logger().info("harvest: %s", {k: v for k, v in stats.items() if k != "per_language"})
    return stats
