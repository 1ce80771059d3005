"""Global stages over embeddings at corpus scale: k-means clusters are the unit of work.

The shape SemDeDup takes at scale (as in NeMo Curator's semantic dedup):

* ``prepare``: spherical k-means centroids are trained on a bounded sample of the vectors, then
  every shard's records are assigned to their `probe` nearest centroids (the first is the record's
  cluster). Only (shard, row) references are kept, never vectors.
* ``bucket`` (one call per partition, in parallel on any executor): each cluster of the partition
  is worked on alone, its members' vectors read from the embed stage's memory-mapped files. A
  cluster's *queries* are the records whose cluster it is; its *candidates* also include records
  for which it is a nearer centroid, so neighbours across a cluster border are still found.
* ``plan``: merges the small per-record results of the partitions.

No step holds every vector: a cluster step holds about probe × rows / clusters of them.
"""

from __future__ import annotations

import io
import json
from abc import abstractmethod
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import faiss
import numpy as np
import pyarrow.parquet as pq

from curation.config import CoverageConfig, SemDedupConfig
from curation.embed import vector_rows, vectors_path
from curation.shards import atomic_write_bytes, atomic_write_json
from curation.stages import GlobalStage

_SEED = 1234
SAMPLE_PER_CENTROID = 64  # k-means sample size per centroid (faiss warns below 39)


def default_clusters(rows: int) -> int:
    return max(1, min(rows, round(np.sqrt(rows))))


def train_centroids(sample: np.ndarray, k: int) -> np.ndarray:
    kmeans = faiss.Kmeans(sample.shape[1], k, niter=20, seed=_SEED, spherical=True,
                          max_points_per_centroid=SAMPLE_PER_CENTROID, verbose=False)
    kmeans.train(sample)
    return kmeans.centroids


def nearest_centroids(vectors: np.ndarray, centroids: np.ndarray, probe: int) -> np.ndarray:
    """rows × probe cluster numbers, nearest first."""
    index = faiss.IndexFlatIP(centroids.shape[1])
    index.add(centroids)
    return index.search(np.ascontiguousarray(vectors), min(probe, len(centroids)))[1].astype(np.int32)


@dataclass
class Members:
    """One cluster's candidates: global row numbers (run order), vectors, language codes, and which
    are its own records (its queries)."""

    cluster: int
    rows: np.ndarray
    vectors: np.ndarray
    lang: np.ndarray
    query: np.ndarray

    def own(self) -> Members:
        q = self.query
        return Members(self.cluster, self.rows[q], self.vectors[q], self.lang[q], np.ones(q.sum(), bool))


def blocks(members: Members, block: int = 1024):
    """(query rows, their similarity to every candidate) `block` queries at a time: a huge cluster
    costs block × size floats, not size²."""
    queries = np.flatnonzero(members.query)
    for start in range(0, len(queries), block):
        rows = queries[start:start + block]
        yield rows, members.vectors[rows] @ members.vectors.T


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


class ClusteredStage(GlobalStage):
    """A global stage whose work is done cluster by cluster (see the module docstring)."""

    def __init__(self, run_dir: Path, config: CoverageConfig | SemDedupConfig):
        super().__init__(run_dir / self.name)
        self.run_dir, self.config = run_dir, config

    def partitions(self) -> list[int]:
        return list(range(self.config.partitions))

    # -- prepare: centroids from a sample, every record assigned ----------------------------------

    def prepare(self, shards: list[str]) -> dict:
        done = self.work_dir / "prepare.json"
        if done.exists():
            return json.loads(done.read_text())
        rows_of = [pq.read_metadata(self.work_dir / "index" / f"{s}.parquet").num_rows for s in shards]
        n = sum(rows_of)
        k = min(self.config.clusters or default_clusters(n), n)
        rng = np.random.default_rng(_SEED)
        sample = np.sort(rng.choice(n, min(n, k * SAMPLE_PER_CENTROID), replace=False))
        starts = np.cumsum([0, *rows_of])
        vector_rows = [self._vector_rows(s) for s in shards]
        picked = [self._vectors(s, vector_rows[i][sample[(sample >= starts[i]) & (sample < starts[i + 1])]
                                                  - starts[i]]) for i, s in enumerate(shards)]
        centroids = train_centroids(np.concatenate(picked), k) if n else np.empty((0, 0), np.float32)
        np.save(self.work_dir / "centroids.npy", centroids)
        langs = self.load_index(shards, ["lang"])[0].column("lang").to_numpy(zero_copy_only=False)
        codes = np.unique(langs.astype(str), return_inverse=True)[1].astype(np.int32)
        for number, (shard, rows) in enumerate(zip(shards, vector_rows)):
            clusters = (nearest_centroids(self._vectors(shard, rows), centroids, self.config.probe) if len(rows)
                        else np.empty((0, 1), np.int32))
            _save_npz(self.work_dir / "assign" / f"{shard}.npz", vector_row=rows, clusters=clusters,
                      lang=codes[starts[number]:starts[number + 1]])
        summary = {"rows": n, "clusters": k, "sample": len(sample), "probe": self.config.probe,
                   "dim": int(centroids.shape[1])}
        atomic_write_json(done, summary)
        return summary

    def _vector_rows(self, shard: str) -> np.ndarray:
        """Where each indexed record of `shard` sits in the embed stage's vector file."""
        ids = pq.read_table(self.work_dir / "index" / f"{shard}.parquet", columns=["id"]).column("id").to_pylist()
        return vector_rows(self.run_dir, shard, ids)

    def _vectors(self, shard: str, rows: np.ndarray) -> np.ndarray:
        stored = np.load(vectors_path(self.run_dir, shard), mmap_mode="r")
        return stored[np.sort(rows)][np.argsort(np.argsort(rows))].astype(np.float32) if len(rows) else (
            np.empty((0, stored.shape[1]), np.float32))

    # -- bucket: one partition's clusters ----------------------------------------------------------

    def bucket(self, shards: list[str], part: int) -> None:
        out = self.work_dir / "parts" / f"{part}.npz"
        if out.exists():
            return
        shard_of, global_row, vector_row, cluster, query, lang = self._part_members(shards, part)
        # by cluster, then run order (hence grouped by shard, as the vectors are read below)
        order = np.lexsort((global_row, cluster))
        shard_of, global_row, vector_row, cluster, query, lang = (
            a[order] for a in (shard_of, global_row, vector_row, cluster, query, lang))
        bounds = np.flatnonzero(np.r_[True, cluster[1:] != cluster[:-1], True])
        results = []
        for start, stop in pairwise(bounds) if len(cluster) else ():
            members = slice(start, stop)
            vectors = np.concatenate([self._vectors(shards[s], vector_row[members][shard_of[members] == s])
                                      for s in np.unique(shard_of[members])])
            results.append(self.work_on(Members(int(cluster[start]), global_row[members], vectors, lang[members],
                                                query[members])))
        _save_npz(out, **{key: np.concatenate([r[key] for r in results]) if results else np.empty(0)
                          for key in self.result_keys})

    def _part_members(self, shards: list[str], part: int) -> tuple[np.ndarray, ...]:
        """Every (record, cluster) reference of this partition's clusters, over all shards."""
        found, offset = [], 0
        for number, shard in enumerate(shards):
            assign = np.load(self.work_dir / "assign" / f"{shard}.npz")
            clusters = assign["clusters"]
            local, slot = np.nonzero(clusters % self.config.partitions == part)
            found.append((np.full(len(local), number), offset + local, assign["vector_row"][local],
                          clusters[local, slot], slot == 0, assign["lang"][local]))
            offset += len(clusters)
        return tuple(np.concatenate([f[i] for f in found]) for i in range(6))

    result_keys: tuple[str, ...]

    @abstractmethod
    def work_on(self, members: Members) -> dict[str, np.ndarray]:
        """Per-record results of one cluster, one array per `result_keys`."""

    def merged_parts(self) -> dict[str, np.ndarray]:
        parts = [np.load(self.work_dir / "parts" / f"{part}.npz") for part in self.partitions()]
        found = {key: [p[key] for p in parts if p[key].size] for key in self.result_keys}
        return {key: np.concatenate(arrays) if arrays else np.empty(0) for key, arrays in found.items()}

    def assigned(self, shards: list[str], key: str) -> np.ndarray:
        """One array of what `prepare` assigned to every record, in run order: `clusters` (nearest
        centroids, its own cluster first) or `lang` (its language as a small integer)."""
        return np.concatenate([np.load(self.work_dir / "assign" / f"{s}.npz")[key] for s in shards])
