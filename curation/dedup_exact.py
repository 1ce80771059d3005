"""Exact deduplication on the hash of the normalised text, global across shards and sources.

The first occurrence in run order (shard name, then row) is kept; every other copy is dropped
with ``dup_of`` naming the kept id.
"""

from __future__ import annotations

import numpy as np

from curation.schema import Reason
from curation.shards import atomic_write_json
from curation.stages import DedupStage


class ExactDedupStage(DedupStage):
    name = "exact_dedup"
    requires = ("id", "norm_hash")
    index_columns = ("id", "norm_hash")
    reason = Reason.EXACT_DUPLICATE

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
