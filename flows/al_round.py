"""The `al-round` flow: train the student on every label so far → score the pool → write a batch.

Each step is a cached Prefect task over the round's files (`curation.active`): a killed round
reruns without re-training what finished. Until the Argilla push exists, the batch is a shard.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import INPUTS, TASK_SOURCE

from curation.active import current_round, select_round, train_round
from curation.config import CurateConfig, load_config
from flows.curate import RESULTS_DIR


@task(cache_policy=INPUTS + TASK_SOURCE, persist_result=True)
def train_step(config_json: str, number: int) -> dict:
    return train_round(CurateConfig.model_validate_json(config_json), number)


@task(cache_policy=INPUTS + TASK_SOURCE, persist_result=True)
def select_step(config_json: str, number: int) -> dict:
    return select_round(CurateConfig.model_validate_json(config_json), number)


@flow(name="al-round", log_prints=True)
def al_round(config_path: str) -> dict:
    """One round of active learning on the curated run of CONFIG."""
    config = load_config(config_path)
    config_json, storage = config.model_dump_json(), Path(config.run_dir) / RESULTS_DIR
    number = current_round(config)
    metrics = train_step.with_options(result_storage=storage, task_run_name=f"train[round {number}]")(
        config_json, number)
    batch = select_step.with_options(result_storage=storage, task_run_name=f"select[round {number}]")(
        config_json, number)
    validation = metrics.get("validation", {}).get("per_language", {})
    create_table_artifact([{"lang": lang, "labels": n, **validation.get(lang, {})}
                           for lang, n in metrics["labels_per_language"].items()] or [{"labels": 0}],
                          key=f"al-round-{number}", description="labels and validation per language")
    create_markdown_artifact(f"Round {number}: {metrics['labeled']} labels so far; next batch "
                             f"{batch['batch']} records by language {batch.get('languages')} at `{batch['path']}`.",
                             key=f"al-round-{number}-batch")
    get_run_logger().info("round %d: batch of %d written to %s", number, batch["batch"], batch["path"])
    return {"round": number, "metrics": metrics, "batch": batch}
