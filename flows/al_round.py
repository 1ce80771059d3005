"""The `al-round` flow: train the student on every label so far → score the pool → write a batch →
(optionally) push it to Argilla and wait until annotators have answered it.

Each step is a cached Prefect task over the round's files (`curation.active`): a killed round
reruns without re-training what finished. Waiting polls `harvest`; a deployment can instead run
`harvest` on a schedule and the next `al-round` after it.
"""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow.parquet as pq
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.cache_policies import INPUTS, TASK_SOURCE

from curation.active import AL_DIR, current_round, metric_history, plot_history, select_round, train_round
from curation.config import CurateConfig, load_config
from curation.labels import answered_share
from flows.annotation import harvest_step, push_step, report_harvest
from flows.curate import RESULTS_DIR
from flows.locks import run_dir_lock


@task(cache_policy=INPUTS + TASK_SOURCE, persist_result=True)
def train_step(config_json: str, number: int) -> dict:
    return train_round(CurateConfig.model_validate_json(config_json), number)


@task(cache_policy=INPUTS + TASK_SOURCE, persist_result=True)
def select_step(config_json: str, number: int) -> dict:
    return select_round(CurateConfig.model_validate_json(config_json), number)


def wait_for_answers(config: CurateConfig, batch_path: str, timeout_s: float) -> float:
    """Harvest every `poll_seconds` until `wait_fraction` of the batch is answered or time runs out."""
    ids = pq.read_table(batch_path, columns=["id"]).column("id").to_pylist()
    deadline, share = time.monotonic() + timeout_s, 0.0
    while True:
        report_harvest(harvest_step(config.model_dump_json()))
        share = answered_share(config.run_dir, ids)
        get_run_logger().info("%.0f%% of the batch answered", 100 * share)
        if share >= config.annotation.wait_fraction or time.monotonic() >= deadline:
            return share
        time.sleep(min(config.annotation.poll_seconds, max(deadline - time.monotonic(), 0)))


@flow(name="al-round", log_prints=True)
def al_round(config_path: str, push: bool = False, wait_s: float = 0) -> dict:
    """One round of active learning on the curated run of CONFIG; with `push` the batch goes to Argilla,
    and with `wait_s` > 0 the flow waits up to that long for annotators to answer it."""
    config = load_config(config_path)
    with run_dir_lock(config):
        return _round(config, push, wait_s)


def _round(config: CurateConfig, push: bool, wait_s: float) -> dict:
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
    history = metric_history(config)
    plot_history(history, Path(config.run_dir) / AL_DIR / "history.png")
    create_table_artifact(history or [{"round": number}], key="al-history",
                          description="per round and language: labels, held-out accuracy and macro-F1")
    create_link_artifact((Path(config.run_dir) / AL_DIR / "history.png").resolve().as_uri(),
                         link_text="accuracy per language across rounds")
    get_run_logger().info("round %d: batch of %d written to %s", number, batch["batch"], batch["path"])
    result = {"round": number, "metrics": metrics, "batch": batch}
    if push or wait_s > 0:
        result["pushed"] = push_step(config_json, number)
    if wait_s > 0:
        result["answered"] = wait_for_answers(config, batch["path"], wait_s)
    return result
