"""The stage contract: a table in, kept / dropped / quarantined tables out, rows conserved.

A `Stage` declares the columns it needs (`requires`) and processes one shard at a time, so
executors (the local loop in `curation.pipeline`, Prefect tasks in `flows/`) decide where shards
run. A `GlobalStage` (dedup) first indexes every shard, then prepares once and works on independent
partitions (both optional), then makes one global plan, then applies the plan shard by shard; each
step persists its result under `<stage>/_work/`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curation.schema import dropped_schema
from curation.shards import WORK_DIR, ShardStats, commit_shard, language_counts, read_shard_stats, write_parquet


@dataclass
class StageOutput:
    kept: pa.Table
    dropped: pa.Table | None = None  # has `drop_reason` and `dup_of`


class Stage(ABC):
    name: ClassVar[str]
    requires: ClassVar[tuple[str, ...]] = ("id", "text")

    @abstractmethod
    def process(self, table: pa.Table, shard: str) -> StageOutput: ...

    def check_columns(self, table: pa.Table, shard: str) -> None:
        missing = [c for c in self.requires if c not in table.column_names]
        if missing:
            raise ValueError(f"stage {self.name!r} needs columns {missing}, shard {shard} has {table.column_names}")


class GlobalStage(Stage):
    """A stage whose per-shard decisions depend on every shard (e.g. deduplication)."""

    index_columns: ClassVar[tuple[str, ...]] = ("id",)

    def __init__(self, stage_dir: Path):
        self.work_dir = stage_dir / WORK_DIR

    def index_shard(self, shard_path: Path) -> None:
        """Write what `plan` needs from one input shard into the work dir (idempotent); by default
        the shard's `index_columns`."""
        table = pq.read_table(shard_path, columns=list(self.index_columns))
        write_parquet(self.work_dir / "index" / f"{shard_path.stem}.parquet", table, max(table.num_rows, 1))

    def load_index(self, shards: list[str], columns: list[str] | None = None) -> tuple[pa.Table, np.ndarray]:
        """All shards' index tables concatenated in run order, with each row's shard number."""
        tables = [pq.read_table(self.work_dir / "index" / f"{s}.parquet", columns=columns) for s in shards]
        shard_of = np.repeat(np.arange(len(shards)), [t.num_rows for t in tables])
        return pa.concat_tables(tables), shard_of

    def prepare(self, shards: list[str]) -> dict:
        """Global work between indexing and the partitions, once (e.g. training centroids); a summary."""
        return {}

    def partitions(self) -> list[int]:
        """Independent parts of the global work that can run in parallel between indexing and the plan
        (e.g. one per LSH band); none by default."""
        return []

    def bucket(self, shards: list[str], part: int) -> None:
        """Do one partition's work over every shard's index and persist it for `plan`."""
        raise NotImplementedError(f"{self.name} has no partitions")

    @abstractmethod
    def plan(self, shards: list[str]) -> dict:
        """Decide globally from all indexes; persist per-shard decisions; return a summary."""


def split_by_mask(table: pa.Table, drop: pa.ChunkedArray | pa.Array, reasons: pa.Array,
                  dup_of: pa.Array) -> StageOutput:
    """Kept rows, and dropped rows with their reason and the id they duplicate."""
    dropped = table.filter(drop)
    dropped = pa.Table.from_arrays(
        [*dropped.columns, reasons.filter(drop), dup_of.filter(drop)], schema=dropped_schema(table.schema))
    return StageOutput(table.filter(pc.invert(drop)), dropped)


def run_shard(stage: Stage, in_path: Path, stage_dir: Path, row_group_rows: int) -> ShardStats:
    """Run a stage on one committed shard; a shard already done is not redone."""
    shard = in_path.stem
    if (done := read_shard_stats(stage_dir, shard)) is not None:
        return done
    table = pq.read_table(in_path)
    stage.check_columns(table, shard)
    out = stage.process(table, shard)
    reasons = Counter(out.dropped.column("drop_reason").to_pylist()) if out.dropped is not None else Counter()
    stats = ShardStats(stage.name, shard, rows_in=table.num_rows, kept=out.kept.num_rows, dropped=dict(reasons),
                       languages=language_counts(out.kept))
    return commit_shard(stage_dir, stats, out.kept, out.dropped, None, row_group_rows)


_DECISIONS = pa.schema([("id", pa.string()), ("dup_of", pa.string())])


class DedupStage(GlobalStage):
    """Shared apply step: drop the ids the plan listed for this shard, naming their keeper."""

    reason: str

    def decisions_path(self, shard: str) -> Path:
        return self.work_dir / "decisions" / f"{shard}.parquet"

    def write_decisions(self, shards: list[str], shard_of: np.ndarray, ids: pa.Array, dup_of: pa.Array) -> None:
        for index, shard in enumerate(shards):
            mask = shard_of == index
            table = pa.table({"id": ids.filter(mask), "dup_of": dup_of.filter(mask)}, schema=_DECISIONS)
            write_parquet(self.decisions_path(shard), table, max(table.num_rows, 1))

    def process(self, table: pa.Table, shard: str) -> StageOutput:
        decisions = pq.read_table(self.decisions_path(shard))
        if decisions.num_rows == 0:
            return StageOutput(table)
        keeper = dict(zip(decisions.column("id").to_pylist(), decisions.column("dup_of").to_pylist()))
        dup_of = pa.array([keeper.get(i) for i in table.column("id").to_pylist()], pa.string())
        drop = pc.is_valid(dup_of)
        return split_by_mask(table, drop, pa.array([self.reason] * table.num_rows, pa.string()), dup_of)


def cluster_keepers(cluster: np.ndarray, preference: np.ndarray | None = None) -> np.ndarray:
    """For each row, the row number of its cluster's keeper: the lowest `preference`, then the
    earliest row (run order)."""
    if not len(cluster):
        return np.empty(0, dtype=np.int64)
    position = np.arange(len(cluster))
    preference = np.zeros(len(cluster)) if preference is None else preference
    order = np.lexsort((position, preference, cluster))
    first_of_cluster = np.r_[True, cluster[order][1:] != cluster[order][:-1]]
    keeper_of_cluster = np.empty(cluster.max() + 1, dtype=np.int64)
    keeper_of_cluster[cluster[order][first_of_cluster]] = order[first_of_cluster]
    return keeper_of_cluster[cluster]
