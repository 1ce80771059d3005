"""Exact deduplication on the hash of the normalised text, global across shards and sources.

The first occurrence in run order (shard name, then row) is kept; every other copy is dropped
with ``dup_of`` naming the kept id.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from curation.schema import Reason
from curation.shards import atomic_write_json, write_parquet
from curation.stages import DedupStage


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
