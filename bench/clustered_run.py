"""Run a clustered stage (coverage, semdedup) on given vectors, the way the pipeline does.

`write_embedded` lays vectors out as the embed stage does (float16 shards with their records);
`run_clustered` then runs the stage's own steps: index every shard, prepare, every partition, plan.
The coverage and translation benchmarks use both, so they measure the stage itself.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curation.clusters import ClusteredStage
from curation.embed import STAGE as EMBED
from curation.embed import vectors_path


def write_embedded(run_dir: Path, shards: Iterable[tuple[np.ndarray, pa.Table]]) -> list[str]:
    """Each (vectors, records) pair becomes one embed shard; `records` has the stage's index columns."""
    names = []
    for number, (vectors, records) in enumerate(shards):
        name = f"part-{number:05d}"
        path = vectors_path(run_dir, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, vectors.astype(np.float16))
        pq.write_table(records, run_dir / EMBED / f"{name}.parquet")
        names.append(name)
    return names


def run_clustered(stage: type[ClusteredStage], config, run_dir: Path, shards: list[str]) -> dict:
    """The plan's summary, with seconds per step."""
    runner, seconds = stage(run_dir, config), {}
    started = time.perf_counter()
    for shard in shards:
        runner.index_shard(run_dir / EMBED / f"{shard}.parquet")
    runner.prepare(shards)
    seconds["index_prepare_s"] = time.perf_counter() - started
    started = time.perf_counter()
    for part in runner.partitions():
        runner.bucket(shards, part)
    seconds["partitions_s"] = time.perf_counter() - started
    started = time.perf_counter()
    summary = runner.plan(shards)
    seconds["plan_s"] = time.perf_counter() - started
    return {**summary, **{k: round(v, 1) for k, v in seconds.items()}}
