"""How well the labeled records cover each language's embedding space (FAISS).

Work is done cluster by cluster (`curation.clusters`): spherical k-means centroids from a sample,
each record assigned to its `probe` nearest. Each record is scored:

* ``cluster``: its k-means cluster;
* ``density``: mean cosine to its `neighbours` nearest records among its cluster's candidates (high:
  a crowded region);
* ``labeled_similarity``: cosine to the nearest labeled record (records with a ``label``), searched
  exactly over all labeled records (a set the labeling budget keeps small); a record is covered
  when this reaches `radius`. Selection (active learning) wants the uncovered.

Coverage per language and per cluster goes to ``coverage/report.{json,md,png}``; the centroids
are kept in ``coverage/_work/`` for later rounds.
"""

from __future__ import annotations

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curation.clusters import ClusteredStage, Members, blocks
from curation.report import markdown_table, save_figure
from curation.schema import STAGE_COLUMNS
from curation.shards import atomic_write_bytes, atomic_write_json, write_parquet
from curation.stages import StageOutput

STAGE = "coverage"


class CoverageStage(ClusteredStage):
    name = STAGE
    requires = ("id", "lang", "label")
    index_columns = ("id", "lang", "label")
    result_keys = ("row", "density")

    def work_on(self, members: Members) -> dict[str, np.ndarray]:
        density = []
        for rows, similarity in blocks(members):
            similarity[np.arange(len(rows)), rows] = -np.inf  # not its own neighbour
            k = min(self.config.neighbours, similarity.shape[1] - 1)
            top = -np.partition(-similarity, k - 1, axis=1)[:, :k] if k else np.ones((len(rows), 1))
            density.append(top.mean(axis=1))
        return {"row": members.rows[members.query],
                "density": np.concatenate(density) if density else np.empty(0, np.float32)}

    def plan(self, shards: list[str]) -> dict:
        meta, shard_of = self.load_index(shards)
        n = meta.num_rows
        k = self.prepare(shards)["clusters"]
        cluster = self.assigned(shards, "clusters")[:, 0]
        parts = self.merged_parts()
        density = np.ones(n, np.float32)
        density[parts["row"].astype(np.int64)] = parts["density"]
        labeled = meta.column("label").is_valid().to_numpy(zero_copy_only=False)
        labeled_similarity = self._labeled_similarity(shards, shard_of, labeled)
        for number, shard in enumerate(shards):
            rows = shard_of == number
            scores = pa.table({
                "id": meta.column("id").filter(pa.array(rows)),
                "cluster": pa.array(cluster[rows], pa.int32()),
                "density": pa.array(density[rows], pa.float32()),
                "labeled_similarity": pa.array(labeled_similarity[rows], pa.float32(), from_pandas=True)})
            write_parquet(self.work_dir / "scores" / f"{shard}.parquet", scores, max(scores.num_rows, 1))
        report = self._report(meta.column("lang").to_numpy(zero_copy_only=False), cluster, labeled,
                              labeled_similarity, k)
        atomic_write_json(self.work_dir.parent / "report.json", report)
        return {k_: v for k_, v in report.items() if k_ in ("rows", "labeled", "clusters", "covered_share")}

    def _labeled_similarity(self, shards: list[str], shard_of: np.ndarray, labeled: np.ndarray) -> np.ndarray:
        """Cosine to the nearest labeled record, shard by shard against a flat index of the labeled."""
        similarity = np.full(len(labeled), np.nan, dtype=np.float32)
        if not labeled.any():
            return similarity
        vector_rows = [np.load(self.work_dir / "assign" / f"{s}.npz")["vector_row"] for s in shards]
        index = faiss.IndexFlatIP(self.prepare(shards)["dim"])
        for number, shard in enumerate(shards):
            index.add(self._vectors(shard, vector_rows[number][labeled[shard_of == number]]))
        for number, shard in enumerate(shards):
            similarity[shard_of == number] = index.search(self._vectors(shard, vector_rows[number]), 1)[0][:, 0]
        return similarity

    def process(self, table: pa.Table, shard: str) -> StageOutput:
        scores = pq.read_table(self.work_dir / "scores" / f"{shard}.parquet")
        row = {record_id: i for i, record_id in enumerate(scores.column("id").to_pylist())}
        take = pa.array([row[i] for i in table.column("id").to_pylist()], pa.int64())
        for field in STAGE_COLUMNS[STAGE]:
            table = table.append_column(field, scores.column(field.name).take(take))
        return StageOutput(table)

    def _report(self, langs: np.ndarray, cluster: np.ndarray, labeled: np.ndarray,
                similarity: np.ndarray, k: int) -> dict:
        covered = np.nan_to_num(similarity, nan=-1.0) >= self.config.radius
        names, code = np.unique(langs.astype(str), return_inverse=True)

        def shares(group: np.ndarray, groups: int) -> list[dict]:
            rows, marked, hit = (np.bincount(group, weights=w, minlength=groups) for w in (None, labeled, covered))
            return [{"rows": int(r), "labeled": int(m), "covered_share": round(float(h / r), 4) if r else 0.0}
                    for r, m, h in zip(rows, marked, hit)]

        per_language = dict(zip(names.tolist(), shares(code, len(names))))
        top_language = np.zeros(k, dtype=np.int64)  # the most frequent language of each cluster
        if len(cluster):
            counts = np.zeros((k, len(names)), dtype=np.int64)
            np.add.at(counts, (cluster, code), 1)
            top_language = counts.argmax(axis=1)
        per_cluster = {c: {**v, "top_language": str(names[top_language[c]]) if v["rows"] else ""}
                       for c, v in enumerate(shares(cluster, k))}
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

