"""How well the labeled records cover each language's embedding space (FAISS).

The plan clusters every vector with spherical k-means, builds a neighbour index (exact inner
product below `flat_below` rows, HNSW above), and scores each record:

* ``cluster``: its k-means cluster;
* ``density``: mean cosine to its `neighbours` nearest records (high: a crowded region);
* ``labeled_similarity``: cosine to the nearest labeled record (records with a ``label``); a
  record is covered when this reaches `radius`. Selection (active learning) wants the uncovered.

Coverage per language and per cluster goes to ``coverage/report.{json,md,png}``; the index and
centroids are kept in ``coverage/_work/`` for later rounds.
"""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curation.config import CoverageConfig, SemDedupConfig
from curation.embed import load_vectors
from curation.report import markdown_table, save_figure
from curation.schema import STAGE_COLUMNS
from curation.shards import atomic_write_bytes, atomic_write_json, write_parquet
from curation.stages import GlobalStage, StageOutput

STAGE = "coverage"
_SEED = 1234


def default_clusters(rows: int) -> int:
    return max(1, min(rows, round(np.sqrt(rows))))


def spherical_kmeans(vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Centroids and each vector's cluster."""
    kmeans = faiss.Kmeans(vectors.shape[1], k, niter=20, seed=_SEED, spherical=True,
                          max_points_per_centroid=256, verbose=False)
    kmeans.train(vectors)
    _, assignment = kmeans.index.search(vectors, 1)
    return kmeans.centroids, assignment[:, 0]


def neighbour_index(vectors: np.ndarray, flat_below: int) -> faiss.Index:
    if len(vectors) < flat_below:
        index = faiss.IndexFlatIP(vectors.shape[1])
    else:
        index = faiss.IndexHNSWFlat(vectors.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
    index.add(vectors)
    return index


class IndexedStage(GlobalStage):
    """A global stage over embeddings: indexes each shard's ids and columns, loads its vectors."""

    def __init__(self, run_dir: Path, config: CoverageConfig | SemDedupConfig):
        super().__init__(run_dir / self.name)
        self.run_dir, self.config = run_dir, config

    def load(self, shards: list[str]) -> tuple[pa.Table, np.ndarray, np.ndarray]:
        """Index rows of all shards, their shard numbers, and their vectors (float32)."""
        meta, shard_of = self.load_index(shards)
        ids = np.array(meta.column("id").to_pylist(), dtype=object)
        vectors = [load_vectors(self.run_dir, s, ids[shard_of == n].tolist()) for n, s in enumerate(shards)]
        dim = max((v.shape[1] for v in vectors if v.ndim == 2 and v.size), default=0)
        return meta, shard_of, np.ascontiguousarray(
            np.concatenate([v.reshape(-1, dim) for v in vectors]) if dim else np.empty((0, 0), np.float32))


class CoverageStage(IndexedStage):
    name = STAGE
    requires = ("id", "lang", "label")
    index_columns = ("id", "lang", "label")

    def plan(self, shards: list[str]) -> dict:
        meta, shard_of, vectors = self.load(shards)
        n = len(vectors)
        k = min(self.config.clusters or default_clusters(n), n)
        centroids, cluster = spherical_kmeans(vectors, k) if n else (np.empty((0, 0)), np.empty(0, int))
        index = neighbour_index(vectors, self.config.flat_below)
        neighbours = min(self.config.neighbours + 1, n)
        similarity, _ = index.search(vectors, neighbours) if n else (np.empty((0, 1)), None)
        density = similarity[:, 1:].mean(axis=1) if neighbours > 1 else np.ones(n)  # column 0 is the record
        labeled = meta.column("label").is_valid().to_numpy(zero_copy_only=False)
        labeled_similarity = np.full(n, np.nan, dtype=np.float32)
        if labeled.any():
            labeled_index = faiss.IndexFlatIP(vectors.shape[1])
            labeled_index.add(vectors[labeled])
            labeled_similarity = labeled_index.search(vectors, 1)[0][:, 0]
        faiss.write_index(index, str(self.work_dir / "neighbours.faiss"))
        np.save(self.work_dir / "centroids.npy", centroids)
        for number, shard in enumerate(shards):
            rows = shard_of == number
            scores = pa.table({
                "id": meta.column("id").filter(pa.array(rows)),
                "cluster": pa.array(cluster[rows], pa.int32()),
                "density": pa.array(density[rows], pa.float32()),
                "labeled_similarity": pa.array(labeled_similarity[rows], pa.float32(), from_pandas=True)})
            write_parquet(self.work_dir / "scores" / f"{shard}.parquet", scores, max(scores.num_rows, 1))
        report = self._report(meta.column("lang").to_pylist(), cluster, labeled, labeled_similarity, k)
        atomic_write_json(self.work_dir.parent / "report.json", report)
        return {k_: v for k_, v in report.items() if k_ in ("rows", "labeled", "clusters", "covered_share")}

    def process(self, table: pa.Table, shard: str) -> StageOutput:
        scores = pq.read_table(self.work_dir / "scores" / f"{shard}.parquet")
        row = {record_id: i for i, record_id in enumerate(scores.column("id").to_pylist())}
        take = pa.array([row[i] for i in table.column("id").to_pylist()], pa.int64())
        for field in STAGE_COLUMNS[STAGE]:
            table = table.append_column(field, scores.column(field.name).take(take))
        return StageOutput(table)

    def _report(self, langs: list[str], cluster: np.ndarray, labeled: np.ndarray,
                similarity: np.ndarray, k: int) -> dict:
        covered = np.nan_to_num(similarity, nan=-1.0) >= self.config.radius
        langs_arr = np.array(langs, dtype=object)

        def share(mask: np.ndarray) -> dict:
            return {"rows": int(mask.sum()), "labeled": int(labeled[mask].sum()),
                    "covered_share": round(float(covered[mask].mean()), 4) if mask.any() else 0.0}

        per_language = {lang: share(langs_arr == lang) for lang in sorted(set(langs))}
        per_cluster = {int(c): {**share(cluster == c), "top_language": _top(langs_arr[cluster == c])}
                       for c in range(k)}
        ranked = {lang: v for lang, v in per_language.items()
                  if v["rows"] >= self.config.min_language_rows and lang != "und"}
        worst = min(ranked.items(), key=lambda kv: kv[1]["covered_share"]) if ranked else None
        report = {"rows": len(langs), "labeled": int(labeled.sum()), "clusters": k, "radius": self.config.radius,
                  "covered_share": round(float(covered.mean()), 4) if len(covered) else 0.0,
                  "worst_language": worst and {"lang": worst[0], **worst[1]},
                  "gap": round(max(v["covered_share"] for v in ranked.values()) - worst[1]["covered_share"], 4)
                  if worst else 0.0,
                  "per_language": per_language,
                  "under_covered_clusters": sorted(
                      ({"cluster": c, **v} for c, v in per_cluster.items()),
                      key=lambda r: (r["covered_share"], -r["rows"]))[:10]}
        self._write_report(report)
        return report

    def _write_report(self, report: dict) -> None:
        import matplotlib.pyplot as plt

        languages = sorted(report["per_language"].items(), key=lambda kv: kv[1]["covered_share"])
        fig, ax = plt.subplots(figsize=(max(6, 0.3 * len(languages)), 4))
        ax.bar([lang for lang, _ in languages], [v["covered_share"] for _, v in languages])
        ax.set_ylim(0, 1)
        ax.set_ylabel(f"share within cosine {report['radius']} of a labeled record")
        ax.set_title(f"labeled coverage per language ({report['labeled']} labeled of {report['rows']})")
        ax.tick_params(axis="x", rotation=90)
        save_figure(fig, self.work_dir.parent / "report.png")
        rows = [{"lang": lang, **v} for lang, v in languages]
        worst = report["worst_language"]
        worst_text = (f"{worst['lang']} ({worst['covered_share']:.1%} covered, {worst['labeled']} labeled of "
                      f"{worst['rows']}), gap to the best {report['gap']:.1%}" if worst else "none ranked")
        markdown = (f"# Coverage\n\n{report['covered_share']:.1%} of {report['rows']} records lie within cosine "
                    f"{report['radius']} of one of {report['labeled']} labeled records. Worst language (of those "
                    f"with {self.config.min_language_rows}+ rows): {worst_text}.\n\n## Per language\n\n"
                    f"{markdown_table(rows)}\n\n## Least covered clusters\n\n"
                    f"{markdown_table(report['under_covered_clusters'])}\n\n![coverage](report.png)\n")
        atomic_write_bytes(self.work_dir.parent / "report.md", markdown.encode())


def _top(values: np.ndarray) -> str:
    if not len(values):
        return ""
    uniques, counts = np.unique(values.astype(str), return_counts=True)
    return str(uniques[counts.argmax()])
