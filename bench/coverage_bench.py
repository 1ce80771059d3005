"""FAISS coverage at scale: k-means + k-NN density + nearest-labeled search on N × 384 vectors.

The vectors are generated from real ones: SIB-200 sentences embedded with the embedded encoder,
each copied with small Gaussian noise (then re-normalised) until N exist, so their geometry is the
encoder's. 1% are treated as labeled. Runs `curation.coverage`'s own functions (spherical
k-means, the index it picks for the size, the search) in a fresh process; reports seconds per
step and peak RSS. Results: bench/results/coverage.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import time
from pathlib import Path

import faiss
import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def base_vectors(sib: Path, count: int) -> np.ndarray:
    from curation.config import EmbedConfig
    from curation.embed import _embedder
    from curation.lid_eval import read_sib_split

    names = sorted(p.name for p in sib.iterdir() if p.is_dir())
    texts = [r["text"] for v in names for r in read_sib_split(sib / v, "dev")[: max(1, count // len(names))]]
    return _embedder(EmbedConfig(enabled=True).model_dump_json()).encode(texts[:count])


def measure(base: np.ndarray, rows: int, flat_below: int) -> dict:
    from curation.coverage import default_clusters, neighbour_index, spherical_kmeans

    rng = np.random.default_rng(0)
    vectors = np.empty((rows, base.shape[1]), dtype=np.float32)
    for start in range(0, rows, 10_000):  # small chunks: the generator must not set the RSS peak
        stop = min(rows, start + 10_000)
        chunk = base[rng.integers(0, len(base), stop - start)] + rng.normal(
            0, 0.02, (stop - start, base.shape[1])).astype(np.float32)
        vectors[start:stop] = chunk / np.linalg.norm(chunk, axis=1, keepdims=True)
    timings = {}
    start = time.perf_counter()
    _, cluster = spherical_kmeans(vectors, default_clusters(rows))
    timings["kmeans_s"] = time.perf_counter() - start
    start = time.perf_counter()
    index = neighbour_index(vectors, flat_below)
    timings["index_build_s"] = time.perf_counter() - start
    start = time.perf_counter()
    index.search(vectors, 11)
    timings["knn_search_s"] = time.perf_counter() - start
    start = time.perf_counter()
    labeled = faiss.IndexFlatIP(vectors.shape[1])
    labeled.add(vectors[rng.choice(rows, rows // 100, replace=False)])
    labeled.search(vectors, 1)
    timings["nearest_labeled_s"] = time.perf_counter() - start
    return {"rows": rows, "dim": int(vectors.shape[1]), "clusters": int(cluster.max() + 1),
            "index": type(index).__name__, **{k: round(v, 1) for k, v in timings.items()},
            "total_s": round(sum(timings.values()), 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sib", type=Path, default=ROOT.parent / "shared" / "data" / "sib200")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--base", type=int, default=4000, help="real sentences embedded as seeds")
    parser.add_argument("--flat-below", type=int, default=200_000)
    args = parser.parse_args()
    base = base_vectors(args.sib, args.base)
    with mp.get_context("spawn").Pool(1) as pool:
        result = pool.apply(measure, (base, args.rows, args.flat_below))
    result["faiss_threads"] = faiss.omp_get_max_threads()
    (ROOT / "bench" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "results" / "coverage.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
