"""FAISS coverage at scale: the clustered stage against one process holding every vector.

The vectors are generated from real ones: SIB-200 sentences embedded with the embedded encoder,
each copied with small Gaussian noise (then re-normalised) until N exist, so their geometry is the
encoder's. 1% are labeled. For each size, in fresh processes and one run:

* **stage**: `curation.coverage.CoverageStage` on embed shards of 10,000 rows (k-means on a sample,
  cluster-by-cluster density, exact nearest-labeled search shard by shard);
* **in memory**: the usual one-process recipe (what this stage did before): every vector in RAM,
  k-means on all, a flat index below 200,000 rows and HNSW (M=32) above, a 10-NN search of all.

Reports seconds, peak RSS, and how close the stage's density is to the in-memory one (Spearman;
the nearest-labeled search is exact in both). Results: bench/results/coverage.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from clustered_run import run_clustered, write_embedded  # noqa: E402
from memory import peak_rss_mb  # noqa: E402

SHARD_ROWS = 10_000
FLAT_BELOW = 200_000


def base_vectors(sib: Path, count: int) -> np.ndarray:
    from curation.config import EmbedConfig
    from curation.embed import _embedder
    from curation.lid_eval import read_sib_split

    names = sorted(p.name for p in sib.iterdir() if p.is_dir())
    texts = [r["text"] for v in names for r in read_sib_split(sib / v, "dev")[: max(1, count // len(names))]]
    return _embedder(EmbedConfig(enabled=True).model_dump_json()).encode(texts[:count])


def generated_shards(base: np.ndarray, rows: int):
    """(vectors, records) per shard of SHARD_ROWS: the same vectors for every method (seeded)."""
    rng = np.random.default_rng(0)
    for start in range(0, rows, SHARD_ROWS):
        size = min(SHARD_ROWS, rows - start)
        chunk = base[rng.integers(0, len(base), size)] + rng.normal(0, 0.02, (size, base.shape[1])).astype(np.float32)
        ids = np.arange(start, start + size)
        labels = np.where(rng.random(size) < 0.01, "label", None)
        yield (chunk / np.linalg.norm(chunk, axis=1, keepdims=True),
               pa.table({"id": ids.astype(str), "lang": [f"l{i % 20}" for i in ids], "label": labels}))


def peak_rss_gb() -> float:
    return round(peak_rss_mb() / 1024, 2)


def rss_gb() -> float:
    """Resident now: the imports' floor, before the work."""
    return round(int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize() / 2**30, 2)


def in_memory(run_dir: Path, shards: list[str]) -> dict:
    """Every vector loaded, then k-means, a k-NN index and the nearest-labeled search over all."""
    from curation.clusters import default_clusters, train_centroids
    from curation.embed import vectors_path

    floor, started = rss_gb(), time.perf_counter()
    vectors = np.concatenate([np.load(vectors_path(run_dir, s)).astype(np.float32) for s in shards])
    labeled = np.concatenate([pq.read_table(run_dir / "embed" / f"{s}.parquet", columns=["label"])
                              .column("label").is_valid().to_numpy(zero_copy_only=False) for s in shards])
    centroids = train_centroids(vectors, default_clusters(len(vectors)))
    index = faiss.IndexFlatIP(vectors.shape[1]) if len(vectors) < FLAT_BELOW else faiss.IndexHNSWFlat(
        vectors.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
    index.add(vectors)
    density = index.search(vectors, 11)[0][:, 1:].mean(axis=1)
    nearest = faiss.IndexFlatIP(vectors.shape[1])
    nearest.add(vectors[labeled])
    nearest.search(vectors, 1)
    np.save(run_dir / "in_memory_density.npy", density)
    return {"index": type(index).__name__, "clusters": len(centroids),
            "total_s": round(time.perf_counter() - started, 1), "peak_rss_gb": peak_rss_gb(), "imports_gb": floor}


def stage(run_dir: Path, shards: list[str]) -> dict:
    from curation.config import CoverageConfig
    from curation.coverage import CoverageStage

    floor, started = rss_gb(), time.perf_counter()
    summary = run_clustered(CoverageStage, CoverageConfig(enabled=True), run_dir, shards)
    return {**summary, "total_s": round(time.perf_counter() - started, 1), "peak_rss_gb": peak_rss_gb(),
            "imports_gb": floor}


def in_fresh_process(function, *args) -> dict:
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(function, args)


def measure(base: np.ndarray, rows: int) -> dict:
    from scipy.stats import spearmanr

    with tempfile.TemporaryDirectory() as folder:
        run_dir = Path(folder)
        shards = write_embedded(run_dir, generated_shards(base, rows))
        result = {"rows": rows, "dim": int(base.shape[1]), "shards": len(shards),
                  "stage": in_fresh_process(stage, run_dir, shards),
                  "in_memory": in_fresh_process(in_memory, run_dir, shards)}
        scores = pq.read_table(run_dir / "coverage" / "_work" / "scores", columns=["density"])
        result["density_spearman"] = round(float(spearmanr(
            scores.column("density").to_numpy(), np.load(run_dir / "in_memory_density.npy")).statistic), 4)
    work = {m: result[m]["peak_rss_gb"] - result[m]["imports_gb"] for m in ("stage", "in_memory")}
    result["work_rss_ratio"] = round(work["stage"] / work["in_memory"], 3)
    result["time_ratio"] = round(result["stage"]["total_s"] / result["in_memory"]["total_s"], 3)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sib", type=Path, default=ROOT.parent / "shared" / "data" / "sib200")
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--base", type=int, default=4000, help="real sentences embedded as seeds")
    args = parser.parse_args()
    base = base_vectors(args.sib, args.base)
    results = {"faiss_threads": faiss.omp_get_max_threads(), "sizes": []}
    for rows in args.rows:
        results["sizes"].append(measure(base, rows))
        print(json.dumps(results["sizes"][-1], indent=2), flush=True)
    (ROOT / "bench" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "results" / "coverage.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
