"""The curate pipeline, written once and run by any executor.

The pipeline is a sequence of named steps over small, JSON-serialisable items (an input-file
number, a shard name). An `Executor` decides where each step runs: `LocalExecutor` here runs them
in this process with progress bars; `flows.curate` runs each as a cached Prefect task. Every step
is idempotent (a committed shard is never redone), so a killed run reruns to the same result.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from tqdm.auto import tqdm

from curation.config import ConfigError, CurateConfig
from curation.coverage import CoverageStage
from curation.dedup_exact import ExactDedupStage
from curation.dedup_near import NearDedupStage
from curation.embed import EmbedStage
from curation.ingest import STAGE as INGEST
from curation.ingest import InputFile, check_inputs, ingest_file, ingested_shards, input_files
from curation.lid import LanguageIdStage
from curation.report import write_report
from curation.semdedup import SemDedupStage
from curation.shards import atomic_write_json, finalize_stage
from curation.stages import GlobalStage, Stage, run_shard


def stage_names(config: CurateConfig) -> list[str]:
    """The enabled stages after ingest, in run order."""
    optional = ("exact_dedup", "near_dedup", "embed", "coverage", "semdedup")
    return ["lid", *(name for name in optional if getattr(config, name).enabled)]


def build_stage(name: str, config: CurateConfig) -> Stage:
    stage_dir = Path(config.run_dir) / name
    if name == "lid":
        return LanguageIdStage(config.lid)
    if name == "exact_dedup":
        return ExactDedupStage(stage_dir)
    if name == "near_dedup":
        return NearDedupStage(stage_dir, config.near_dedup)
    if name == "embed":
        return EmbedStage(Path(config.run_dir), config.embed)
    if name == "coverage":
        return CoverageStage(Path(config.run_dir), config.coverage)
    if name == "semdedup":
        return SemDedupStage(Path(config.run_dir), config.semdedup)
    raise ValueError(f"unknown stage {name!r}")


def previous_stage(config: CurateConfig, name: str) -> str:
    order = [INGEST, *stage_names(config)]
    return order[order.index(name) - 1]


DOWNSTREAM = {"active_learning", "annotation", "mixture", "augment", "export", "schedule", "runner"}


def config_fingerprint(config: CurateConfig) -> str:
    """What the curated shards depend on: not the settings of what comes after them (active learning,
    annotation, mixture, export), which may change between rounds, nor where and when it runs."""
    return hashlib.sha256(config.model_dump_json(exclude=DOWNSTREAM).encode()).hexdigest()[:16]


def claim_run_dir(config: CurateConfig, files: list[InputFile]) -> None:
    """A run directory is one config over one snapshot of the inputs: reusing it with another config,
    or after input files were added, removed or changed, would mix results (or silently skip the new
    rows), so both are refused. A killed run over the same inputs resumes."""
    marker = Path(config.run_dir) / "run.json"
    claim = {"config_fingerprint": config_fingerprint(config),
             "inputs_fingerprint": hashlib.sha256(json.dumps([[f.path, f.fingerprint()] for f in files]).encode())
             .hexdigest()[:16]}
    if marker.exists():
        found = json.loads(marker.read_text())
        for key, what in (("config_fingerprint", "another config"), ("inputs_fingerprint", "other input files")):
            if found.get(key) != claim[key]:
                raise ConfigError(f"{config.run_dir} holds a run of {what} ({found.get(key)} != {claim[key]}); "
                                  "choose a new run_dir (e.g. run_dir: runs/nightly-{date}) or remove the old one")
        return
    atomic_write_json(marker, {**claim, "config": config.model_dump(mode="json")})


# -- steps: (config, stage, item) -> JSON-serialisable result -------------------------------------------

def step_ingest(config: CurateConfig, stage: str, file_index: int) -> list[str]:
    stage_dir = Path(config.run_dir) / stage
    file = input_files(config)[file_index]
    done = ingested_shards(file, stage_dir) or ingest_file(file, config, stage_dir)
    return [s.shard for s in done]


def _global(config: CurateConfig, stage: str) -> GlobalStage:
    global_stage = build_stage(stage, config)
    assert isinstance(global_stage, GlobalStage)
    return global_stage


def step_index(config: CurateConfig, stage: str, shard: str) -> None:
    _global(config, stage).index_shard(Path(config.run_dir) / previous_stage(config, stage) / f"{shard}.parquet")


def step_prepare(config: CurateConfig, stage: str, shards: list[str]) -> dict:
    return _global(config, stage).prepare(shards)


def step_bucket(config: CurateConfig, stage: str, part: int) -> None:
    _global(config, stage).bucket(finished_shards(config, previous_stage(config, stage)), part)


def step_plan(config: CurateConfig, stage: str, shards: list[str]) -> dict:
    return _global(config, stage).plan(shards)


def step_apply(config: CurateConfig, stage: str, shard: str) -> dict:
    in_path = Path(config.run_dir) / previous_stage(config, stage) / f"{shard}.parquet"
    stats = run_shard(build_stage(stage, config), in_path, Path(config.run_dir) / stage, config.row_group_rows)
    return {"shard": stats.shard, "kept": stats.kept}


def step_finalize(config: CurateConfig, stage: str, shards: list[str]) -> dict:
    return finalize_stage(Path(config.run_dir) / stage, stage, shards)


STEPS: dict[str, Callable] = {"ingest": step_ingest, "index": step_index, "prepare": step_prepare,
                              "bucket": step_bucket, "plan": step_plan, "apply": step_apply,
                              "finalize": step_finalize}


class Executor(Protocol):
    def map(self, step: str, stage: str, items: list) -> list:
        """Run `STEPS[step]` for each item (in any order, maybe in parallel); results in item order."""

    def call(self, step: str, stage: str, shards: list[str]) -> dict:
        """Run one global step over all shards."""


def run_ingest(config: CurateConfig, executor: Executor) -> tuple[list[str], dict]:
    files = check_inputs(config)
    claim_run_dir(config, files)
    shards = sorted(s for found in executor.map("ingest", INGEST, [f.index for f in files]) for s in found)
    return shards, executor.call("finalize", INGEST, shards)


def run_stage(config: CurateConfig, stage: str, executor: Executor, shards: list[str]) -> dict:
    if isinstance(global_stage := build_stage(stage, config), GlobalStage):
        executor.map("index", stage, shards)
        executor.call("prepare", stage, shards)
        if parts := global_stage.partitions():
            executor.map("bucket", stage, parts)
        executor.call("plan", stage, shards)
    executor.map("apply", stage, shards)
    return executor.call("finalize", stage, shards)


def finished_shards(config: CurateConfig, stage: str) -> list[str]:
    """The shard names a finished stage wrote (from its manifest)."""
    manifest = Path(config.run_dir) / stage / "manifest.json"
    if not manifest.exists():
        raise ConfigError(f"stage {stage!r} has not finished in {config.run_dir}: run it first")
    return [Path(entry["path"]).stem for entry in json.loads(manifest.read_text())["shards"]]


def run_pipeline(config: CurateConfig, executor: Executor) -> dict:
    """Run every enabled stage; return the summary that the report shows."""
    shards, ingest_stats = run_ingest(config, executor)
    stats = [ingest_stats] + [run_stage(config, stage, executor, shards) for stage in stage_names(config)]
    return write_report(Path(config.run_dir), stats)


class LocalExecutor:
    """Runs steps one after another in this process, with a progress bar per stage."""

    def __init__(self, config: CurateConfig, progress: bool = True):
        self.config = config
        self.progress = progress

    def map(self, step: str, stage: str, items: list) -> list:
        bar = tqdm(items, desc=f"{stage}:{step}", unit="file" if step == "ingest" else "shard",
                   disable=not self.progress)
        return [STEPS[step](self.config, stage, item) for item in bar]

    def call(self, step: str, stage: str, shards: list[str]) -> dict:
        return STEPS[step](self.config, stage, shards)
