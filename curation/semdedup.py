"""Semantic dedup (SemDeDup-style): k-means, then cosine ≥ 1-ε within a cluster.

Pairs in the same language are semantic duplicates: their connected components keep one record
(`keep`: first or longest) and drop the rest, each naming its keeper. Pairs in different
languages that are each other's nearest neighbour are near-translations (SIB-200's parallel
sentences are the test case): they are listed in ``translations``, never dropped, because a
mixture may want both while an evaluation split must not hold one and train on the other.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from curation.coverage import IndexedStage, default_clusters, neighbour_index, spherical_kmeans
from curation.schema import STAGE_COLUMNS, Reason
from curation.shards import atomic_write_json, write_parquet
from curation.stages import DedupStage, StageOutput, cluster_keepers

STAGE = "semdedup"


def duplicate_pairs(vectors: np.ndarray, cluster: np.ndarray, langs: np.ndarray, min_cosine: float,
                    block: int = 1024) -> np.ndarray:
    """Same-language pairs (i < j) of one k-means cluster at `min_cosine` or more. Similarities are
    computed `block` rows at a time, so a huge cluster costs block × size floats, not size²."""
    pairs = [np.empty((0, 2), dtype=np.int64)]
    for c in np.unique(cluster):
        members = np.flatnonzero(cluster == c)
        for start in range(0, len(members), block):
            rows = members[start:start + block]
            i, j = np.nonzero(vectors[rows] @ vectors[members].T >= min_cosine)
            i, j = rows[i], members[j]
            keep = (i < j) & (langs[i] == langs[j])
            pairs.append(np.stack([i[keep], j[keep]], axis=1))
    return np.concatenate(pairs)


def translation_pairs(vectors: np.ndarray, langs: np.ndarray, min_cosine: float, neighbours: int,
                      flat_below: int) -> np.ndarray:
    """Cross-language pairs (i < j) at `min_cosine` or more that are each other's nearest neighbour in
    the other's language, found with a k-NN search over all records (translations rarely share a
    k-means cluster: the encoder's clusters follow language as much as meaning)."""
    n = len(vectors)
    codes = np.unique(langs, return_inverse=True)[1]
    sims, found = neighbour_index(vectors, flat_below).search(vectors, min(neighbours + 1, n))
    rows = np.repeat(np.arange(n), found.shape[1])
    other, sim = found.ravel(), sims.ravel()
    valid = (other >= 0) & (other != rows)
    rows, other, sim = rows[valid], other[valid], sim[valid]
    valid = codes[other] != codes[rows]
    rows, other, sim = rows[valid], other[valid], sim[valid]
    n_codes = codes.max() + 1
    # neighbours come sorted by similarity, so the first hit per (record, language) is the best one
    keys, first = np.unique(rows * n_codes + codes[other], return_index=True)
    best_row, best_other, best_sim = rows[first], other[first], sim[first]
    reverse = best_other * n_codes + codes[best_row]
    at = np.minimum(np.searchsorted(keys, reverse), len(keys) - 1)
    mutual = (keys[at] == reverse) & (best_other[at] == best_row) & (best_sim >= min_cosine)
    pairs = np.stack([best_row[mutual], best_other[mutual]], axis=1)
    return pairs[pairs[:, 0] < pairs[:, 1]]


class SemDedupStage(IndexedStage, DedupStage):
    name = STAGE
    requires = ("id", "lang", "n_chars")
    index_columns = ("id", "lang", "n_chars")
    reason = Reason.SEMANTIC_DUPLICATE

    def plan(self, shards: list[str]) -> dict:
        meta, shard_of, vectors = self.load(shards)
        n = len(vectors)
        ids = meta.column("id").combine_chunks()
        langs = np.array(meta.column("lang").to_pylist(), dtype=object)
        cluster = spherical_kmeans(vectors, min(self.config.clusters or default_clusters(n), n))[1] if n else []
        duplicates = duplicate_pairs(vectors, np.asarray(cluster), langs, 1 - self.config.epsilon)
        graph = coo_matrix((np.ones(len(duplicates)), (duplicates[:, 0], duplicates[:, 1])), shape=(n, n))
        components = connected_components(graph, directed=False)[1]
        preference = -meta.column("n_chars").to_numpy() if self.config.keep == "longest" else None
        keeper = cluster_keepers(components, preference)
        dups = np.flatnonzero(keeper != np.arange(n))
        self.write_decisions(shards, shard_of[dups], ids.take(dups), ids.take(keeper[dups]))
        translations = (translation_pairs(vectors, langs, self.config.translation_min_cosine, self.config.neighbours,
                                          self.config.flat_below) if self.config.flag_translations and n > 1
                        else np.empty((0, 2), dtype=np.int64))
        both_ways = np.concatenate([translations, translations[:, ::-1]])
        for number, shard in enumerate(shards):
            rows = both_ways[shard_of[both_ways[:, 0]] == number]
            table = pa.table({"id": ids.take(rows[:, 0]), "translation": ids.take(rows[:, 1])})
            write_parquet(self.work_dir / "translations" / f"{shard}.parquet", table, max(table.num_rows, 1))
        summary = {"rows": n, "duplicates": len(dups), "duplicate_pairs": len(duplicates),
                   "translation_pairs": len(translations)}
        atomic_write_json(self.work_dir / "plan.json", summary)
        return summary

    def process(self, table: pa.Table, shard: str) -> StageOutput:
        out = super().process(table, shard)
        flags = pq.read_table(self.work_dir / "translations" / f"{shard}.parquet")
        partners: dict[str, list[str]] = {}
        for record_id, partner in zip(flags.column("id").to_pylist(), flags.column("translation").to_pylist()):
            partners.setdefault(record_id, []).append(partner)
        field = STAGE_COLUMNS[STAGE][0]
        values = pa.array([partners.get(i, []) for i in out.kept.column("id").to_pylist()], field.type)
        return StageOutput(out.kept.append_column(field, values), out.dropped)
