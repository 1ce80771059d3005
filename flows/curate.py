"""The `curate` flow: every pipeline step of every shard is a cached, resumable Prefect task."""

from __future__ import annotations

import os
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import INPUTS, TASK_SOURCE
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner

from curation.config import CurateConfig, load_config
from curation.ingest import input_files
from curation.pipeline import STEPS, build_stage, run_pipeline, stage_names
from curation.stages import GlobalStage

RESULTS_DIR = ".prefect-results"


@task(cache_policy=INPUTS + TASK_SOURCE, persist_result=True)
def run_step(config_json: str, step: str, stage: str, item: object, input_fingerprint: str = "") -> object:
    """One pipeline step. `input_fingerprint` (an input file's size and mtime) is only a cache key."""
    config = CurateConfig.model_validate_json(config_json)
    result = STEPS[step](config, stage, item)
    if step in ("plan", "finalize"):
        get_run_logger().info("%s %s: %s", stage, step, {k: v for k, v in result.items() if k != "languages"})
    return result


class PrefectExecutor:
    """Submits each step as a task; reports progress as a Prefect progress artifact."""

    def __init__(self, config: CurateConfig):
        self.config = config
        self.config_json = config.model_dump_json(exclude={"active_learning"})  # cache keys: curation only
        self.fingerprints = {f.index: f.fingerprint() for f in input_files(config)}
        self.task = run_step.with_options(result_storage=Path(config.run_dir) / RESULTS_DIR)
        units = 1 + sum(2 if isinstance(build_stage(s, config), GlobalStage) else 1 for s in stage_names(config))
        self.unit = 100.0 / units
        self.done = 0.0
        self.progress_id = create_progress_artifact(0.0, description=f"curate {config.run_dir}")

    def _advance(self, amount: float) -> None:
        self.done = min(100.0, self.done + amount)
        update_progress_artifact(self.progress_id, self.done)

    def map(self, step: str, stage: str, items: list) -> list:
        futures = [self.task.with_options(task_run_name=f"{stage}.{step}[{item}]").submit(
            self.config_json, step, stage, item, self.fingerprints.get(item, "") if step == "ingest" else "")
            for item in items]
        for _ in as_completed(futures):
            self._advance(self.unit / max(len(items), 1))
        return [f.result() for f in futures]

    def call(self, step: str, stage: str, shards: list[str]) -> dict:
        return self.task.with_options(task_run_name=f"{stage}.{step}").submit(
            self.config_json, step, stage, shards).result()


@flow(name="curate", task_runner=ThreadPoolTaskRunner(max_workers=os.cpu_count() or 2), log_prints=True)
def curate(config_path: str) -> dict:
    """Ingest → language ID → exact dedup → near dedup [→ embed → coverage → semdedup], shard by shard,
    resumable."""
    config = load_config(config_path)
    summary = run_pipeline(config, PrefectExecutor(config))
    key = Path(config.run_dir).name.lower().replace("_", "-")
    create_table_artifact(summary["stages"], key=f"{key}-stages", description="rows per stage")
    create_markdown_artifact(summary["markdown"], key=f"{key}-report", description="curate report")
    create_link_artifact(Path(config.run_dir, "report.png").resolve().as_uri(), link_text="report.png")
    coverage = Path(config.run_dir, "coverage", "report.md")
    if coverage.exists():
        create_markdown_artifact(coverage.read_text(), key=f"{key}-coverage", description="labeled coverage")
    get_run_logger().info("curated shards: %s", summary["output"])
    return {k: v for k, v in summary.items() if k != "markdown"}
