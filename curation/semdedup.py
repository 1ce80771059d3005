"""Semantic dedup (SemDeDup-style): k-means, then cosine ≥ 1-ε within a cluster, cluster by cluster
(`curation.clusters`).

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

from curation.clusters import ClusteredStage, Members, blocks
from curation.schema import STAGE_COLUMNS, Reason
from curation.shards import atomic_write_json, write_parquet
from curation.stages import DedupStage, StageOutput, cluster_keepers

STAGE = "semdedup"


def duplicate_pairs(members: Members, min_cosine: float) -> np.ndarray:
    """Same-language pairs of global rows (i < j) among one cluster's own records at `min_cosine`+."""
    own = members.own()
    pairs = [np.empty((0, 2), dtype=np.int64)]
    for rows, similarity in blocks(own):
        i, j = np.nonzero(similarity >= min_cosine)
        i = rows[i]
        keep = (own.rows[i] < own.rows[j]) & (own.lang[i] == own.lang[j])
        pairs.append(np.stack([own.rows[i[keep]], own.rows[j[keep]]], axis=1))
    return np.concatenate(pairs)


def best_in_other_languages(members: Members, neighbours: int) -> np.ndarray:
    """(row, other, similarity) rows: for each of the cluster's own records, its best match in each
    other language among its `neighbours` nearest candidates. The candidates include records with
    this cluster among their `probe` nearest centroids: translations often fall in different
    clusters, since the encoder's clusters follow language as much as meaning."""
    found = [np.empty((0, 3))]
    n_codes = int(members.lang.max()) + 1 if len(members.lang) else 1
    for rows, similarity in blocks(members):
        k = min(neighbours + 1, similarity.shape[1])
        top = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
        top_similarity = np.take_along_axis(similarity, top, axis=1)
        order = np.argsort(-top_similarity, axis=1)  # best first: the first hit per language is its best
        top, top_similarity = np.take_along_axis(top, order, axis=1), np.take_along_axis(top_similarity, order, axis=1)
        query, other, sim = np.repeat(rows, k), top.ravel(), top_similarity.ravel()
        valid = members.lang[other] != members.lang[query]
        query, other, sim = query[valid], other[valid], sim[valid]
        _, first = np.unique(query * n_codes + members.lang[other], return_index=True)
        found.append(np.stack([members.rows[query[first]], members.rows[other[first]], sim[first]], axis=1))
    return np.concatenate(found)


def mutual_best(found: np.ndarray, codes: np.ndarray, min_cosine: float) -> np.ndarray:
    """Pairs (i < j) that are each other's best match in the other's language, at `min_cosine`+."""
    row, other, sim = found[:, 0].astype(np.int64), found[:, 1].astype(np.int64), found[:, 2]
    n_codes = int(codes.max()) + 1 if len(codes) else 1
    keys = row * n_codes + codes[other]
    order = np.argsort(keys)
    keys, row, other, sim = keys[order], row[order], other[order], sim[order]
    reverse = other * n_codes + codes[row]
    at = np.minimum(np.searchsorted(keys, reverse), len(keys) - 1)
    mutual = (keys[at] == reverse) & (other[at] == row) & (sim >= min_cosine) if len(keys) else np.zeros(0, bool)
    pairs = np.stack([row[mutual], other[mutual]], axis=1)
    return pairs[pairs[:, 0] < pairs[:, 1]]


class SemDedupStage(ClusteredStage, DedupStage):
    name = STAGE
    requires = ("id", "lang", "n_chars")
    index_columns = ("id", "lang", "n_chars")
    reason = Reason.SEMANTIC_DUPLICATE
    result_keys = ("duplicates", "best_matches")

    def work_on(self, members: Members) -> dict[str, np.ndarray]:
        return {"duplicates": duplicate_pairs(members, 1 - self.config.epsilon),
                "best_matches": best_in_other_languages(members, self.config.neighbours)
                if self.config.flag_translations else np.empty((0, 3))}

    def plan(self, shards: list[str]) -> dict:
        meta, shard_of = self.load_index(shards)
        n = meta.num_rows
        ids = meta.column("id").combine_chunks()
        parts = self.merged_parts()
        duplicates = parts["duplicates"].reshape(-1, 2).astype(np.int64)
        graph = coo_matrix((np.ones(len(duplicates)), (duplicates[:, 0], duplicates[:, 1])), shape=(n, n))
        components = connected_components(graph, directed=False)[1]
        preference = -meta.column("n_chars").to_numpy() if self.config.keep == "longest" else None
        keeper = cluster_keepers(components, preference)
        dups = np.flatnonzero(keeper != np.arange(n))
        self.write_decisions(shards, shard_of[dups], ids.take(dups), ids.take(keeper[dups]))
        translations = mutual_best(parts["best_matches"].reshape(-1, 3), self.assigned(shards, "lang"),
                                   self.config.translation_min_cosine)
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
