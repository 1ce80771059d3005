"""Near-dedup at scale: time and peak RSS for N short documents generated from real SIB-200 text.

Every SIB-200 sentence (train + dev, 205 varieties, ~164k) is repeated with random word or
character edits until N documents exist, written as 50k-row shards; then the near-dedup stage
indexes every shard and plans globally in a fresh process whose peak RSS is reported.
Target: 1M documents within 2 GB RSS. Results go to bench/results/dedup_scale.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import random
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from memory import peak_rss_mb  # noqa: E402
from planted import _edit  # noqa: E402

from curation.config import NearDedupConfig  # noqa: E402
from curation.dedup_near import NearDedupStage  # noqa: E402
from curation.lid_eval import read_sib_split  # noqa: E402
from curation.scripts import detect_scripts  # noqa: E402

SHARD_ROWS = 50_000


def generate(sib: Path, total: int, folder: Path) -> list[str]:
    base = [r["text"] for v in sorted(p.name for p in sib.iterdir() if p.is_dir())
            for split in ("train", "dev") for r in read_sib_split(sib / v, split)]
    scripts = detect_scripts(base)
    vocabulary = [w for t in base[:5000] for w in t.split()]
    rng = random.Random(0)
    shards, rows = [], []
    for n in range(total):
        k = n % len(base)
        text = base[k] if n < len(base) else _edit(base[k], scripts[k], rng.randint(1, 8), rng, vocabulary)
        rows.append((f"doc-{n}", text, scripts[k]))
        if len(rows) == SHARD_ROWS or n == total - 1:
            name = f"part-{len(shards):05d}"
            pq.write_table(pa.table({"id": [r[0] for r in rows], "text": [r[1] for r in rows],
                                     "script": [r[2] for r in rows],
                                     "n_chars": pa.array([len(r[1]) for r in rows], pa.int32()),
                                     "meta": ["{}"] * len(rows)}), folder / f"{name}.parquet")
            shards.append(name)
            rows = []
    return shards


def dedup(folder: Path, shards: list[str]) -> dict:
    stage = NearDedupStage(folder / "near_dedup", NearDedupConfig())
    start = time.perf_counter()
    for shard in shards:
        stage.index_shard(folder / f"{shard}.parquet")
    index_s = time.perf_counter() - start
    for part in stage.partitions():
        stage.bucket(shards, part)
    summary = stage.plan(shards)
    total_s = time.perf_counter() - start
    return {**summary, "index_seconds": round(index_s, 1), "plan_seconds": round(total_s - index_s, 1),
            "docs_per_s": round(summary["rows"] / total_s),
            "peak_rss_mb": round(peak_rss_mb())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sib", type=Path, default=ROOT.parent / "shared" / "data" / "sib200")
    parser.add_argument("--docs", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        shards = generate(args.sib, args.docs, Path(tmp))
        with mp.get_context("spawn").Pool(1) as pool:
            result = pool.apply(dedup, (Path(tmp), shards))
    result["documents"] = args.docs
    out = ROOT / "bench" / "results" / "dedup_scale.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
