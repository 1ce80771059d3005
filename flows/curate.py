"""The `curate` flow: every pipeline step of every shard is a cached, resumable Prefect task."""

from __future__ import annotations

import json
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
from prefect.runtime import deployment
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from curation.config import CurateConfig, RunnerConfig, load_config
from curation.drift import record
from curation.ingest import input_files
from curation.pipeline import DOWNSTREAM, STEPS, build_stage, run_pipeline, stage_names
from curation.stages import GlobalStage, Stage
from flows.locks import run_dir_lock

RESULTS_DIR = ".prefect-results"
DRIFT_HISTORY = "history/languages.jsonl"  # beside the run dirs: one line per curate run, with its deployment


@task(cache_policy=INPUTS + TASK_SOURCE, persist_result=True)
def run_step(config_json: str, step: str, stage: str, item: object, input_fingerprint: str = "") -> object:
    """One pipeline step. `input_fingerprint` (an input file's size and mtime) is only a cache key."""
    config = CurateConfig.model_validate_json(config_json)
    result = STEPS[step](config, stage, item)
    if step in ("prepare", "plan", "finalize") and result:
        get_run_logger().info("%s %s: %s", stage, step, {k: v for k, v in result.items() if k != "languages"})
    return result


class PrefectExecutor:
    """Submits each step as a task; reports progress as a Prefect progress artifact."""

    def __init__(self, config: CurateConfig):
        self.config = config
        self.config_json = config.model_dump_json(exclude=DOWNSTREAM)  # cache keys: curation settings only
        self.fingerprints = {f.index: f.fingerprint() for f in input_files(config)}
        self.task = run_step.with_options(result_storage=Path(config.run_dir) / RESULTS_DIR)
        units = 1 + sum(_mapped_steps(build_stage(s, config)) for s in stage_names(config))
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


def _mapped_steps(stage: Stage) -> int:
    """Progress units of a stage: apply; for a global stage also index, and bucket when partitioned."""
    return 1 + (isinstance(stage, GlobalStage) and 1 + bool(stage.partitions()))


def task_runner(runner: RunnerConfig) -> TaskRunner:
    """Threads (default), a Dask cluster by address, or a local Dask cluster of worker processes."""
    workers = runner.workers or os.cpu_count() or 2
    if runner.task_runner == "threads":
        return ThreadPoolTaskRunner(max_workers=workers)
    from prefect_dask import DaskTaskRunner

    if runner.dask_address:
        return DaskTaskRunner(address=runner.dask_address)
    return DaskTaskRunner(cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True,
                                          "dashboard_address": None})


@flow(name="curate-shards", log_prints=True)
def curate_shards(config_json: str) -> dict:
    """Every step of every shard as a cached task on the configured task runner."""
    config = CurateConfig.model_validate_json(config_json)
    return run_pipeline(config, PrefectExecutor(config))


@flow(name="curate", log_prints=True)
def curate(config_path: str) -> dict:
    """Ingest → language ID → exact dedup → near dedup [→ embed → coverage → semdedup], shard by shard,
    resumable; one flow at a time per run directory. Warns when the languages drifted since the
    deployment's previous run."""
    config = load_config(config_path)
    with run_dir_lock(config):
        summary = curate_shards.with_options(task_runner=task_runner(config.runner))(config.model_dump_json())
    key = Path(config.run_dir).name.lower().replace("_", "-")
    create_table_artifact(summary["stages"], key=f"{key}-stages", description="rows per stage")
    create_markdown_artifact(summary["markdown"], key=f"{key}-report", description="curate report")
    create_link_artifact(Path(config.run_dir, "report.png").resolve().as_uri(), link_text="report.png")
    coverage = Path(config.run_dir, "coverage", "report.md")
    if coverage.exists():
        create_markdown_artifact(coverage.read_text(), key=f"{key}-coverage", description="labeled coverage")
    summary["drift"] = report_drift(config, key)
    get_run_logger().info("curated shards: %s", summary["output"])
    return {k: v for k, v in summary.items() if k != "markdown"}


def report_drift(config: CurateConfig, key: str) -> dict | None:
    """Compare the identified languages with the deployment's previous run; a warning artifact past the
    threshold."""
    name = deployment.name or "ad-hoc"
    identified = json.loads((Path(config.run_dir) / "lid" / "stats.json").read_text())["languages"]
    drift = record(Path(config.run_dir).parent / DRIFT_HISTORY, name, identified)
    if drift is None:
        return None
    moved = drift["total_variation"] > config.schedule.drift_threshold
    top = ", ".join(f"{m['lang']} {m['previous_share']:.1%} → {m['share']:.1%}" for m in drift["languages"][:5])
    create_markdown_artifact(
        f"{'**Warning: language drift.** ' if moved else ''}Total variation {drift['total_variation']:.3f} against "
        f"the run of {drift['previous_at']} (threshold {config.schedule.drift_threshold}). Largest moves: {top}.",
        key=f"{key}-drift", description="language distribution against the previous run of this deployment")
    if moved:
        get_run_logger().warning("language drift %.3f > %.3f: %s", drift["total_variation"],
                                 config.schedule.drift_threshold, top)
    return drift
