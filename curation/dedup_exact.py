"""Exact deduplication on the hash of the normalised text, global across shards and sources.

The first occurrence in run order (shard name, then row) is kept; every other copy is dropped
with ``dup_of`` naming the kept id.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curation.schema import Reason
from curation.shards import atomic_write_json, write_parquet
from curation.stages import GlobalStage, StageOutput, split_by_mask

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

    def load_index(self, shards: list[str], columns: list[str]) -> tuple[pa.Table, np.ndarray]:
        """All shards' index tables concatenated in run order, with each row's shard number."""
        tables = [pq.read_table(self.work_dir / "index" / f"{s}.parquet", columns=columns) for s in shards]
        shard_of = np.repeat(np.arange(len(shards)), [t.num_rows for t in tables])
        return pa.concat_tables(tables), shard_of


class ExactDedupStage(DedupStage):
    name = "exact_dedup"
    requires = ("id", "norm_hash")
    reason = Reason.EXACT_DUPLICATE

    def index_shard(self, shard_path: Path) -> None:
        table = pq.read_table(shard_path, columns=["id", "norm_hash"])
        write_parquet(self.work_dir / "index" / f"{shard_path.stem}.parquet", table, max(table.num_rows, 1))

    def plan(self, shards: list[str]) -> dict:
        index, shard_of = self.load_index(shards, ["id", "norm_hash"])
        hashes = index.column("norm_hash").to_numpy()
        order = np.argsort(hashes, kind="stable")  # stable: run order decides the keeper
        sorted_hashes = hashes[order]
        first = np.ones(len(order), dtype=bool)
        first[1:] = sorted_hashes[1:] != sorted_hashes[:-1]
        keeper_pos = np.maximum.accumulate(np.where(first, np.arange(len(order)), 0))
        dups = order[~first]
        ids = index.column("id").combine_chunks()
        self.write_decisions(shards, shard_of[dups], ids.take(dups), ids.take(order[keeper_pos[~first]]))
        summary = {"rows": len(order), "duplicates": len(dups), "distinct": int(first.sum())}
        atomic_write_json(self.work_dir / "plan.json", summary)
        return summary
