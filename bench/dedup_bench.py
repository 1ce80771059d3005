"""Near-duplicate detection, side by side: this project vs datasketch vs text-dedup, in one run.

Corpus: SIB-200 training sentences (real, 205 language varieties) plus planted near-duplicates of
known Jaccard similarity (`planted.py`). Ground truth is the exact Jaccard of the shingle sets.

* recall: planted pairs with Jaccard ≥ threshold that end in one cluster;
* precision: removed documents whose exact Jaccard to the document kept for them is ≥ threshold
  (counts wrong merges of unrelated documents, not only planted pairs);
* docs/s over the whole dedup (shingling, hashing, clustering) and peak RSS, each tool in its own
  process.

text-dedup needs Python ≥ 3.12: pass `--text-dedup-python /path/to/venv/bin/python` (a venv with
`text-dedup==0.4.1`); it is skipped otherwise. Results go to bench/results/dedup.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from memory import peak_rss_mb  # noqa: E402
from planted import plant  # noqa: E402

from curation.config import NearDedupConfig  # noqa: E402
from curation.dedup_near import NearDedupStage, shingles  # noqa: E402
from curation.lid_eval import read_sib_split  # noqa: E402
from curation.scripts import detect_scripts  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def load_corpus(sib: Path, varieties: int, per_variety: int, share: float) -> list[dict]:
    names = sorted(p.name for p in sib.iterdir() if (p / "train.tsv").exists())[:varieties]
    docs = [{"id": f"{v}/{r['index_id']}", "text": r["text"]} for v in names
            for r in read_sib_split(sib / v, "train")[:per_variety]]
    for doc, script in zip(docs, detect_scripts([d["text"] for d in docs])):
        doc["script"] = script
    return docs + plant(docs, share=share, seed=7)


def run_ours(corpus: list[dict], threshold: float, work: Path, shard_rows: int = 50_000) -> dict:
    config = NearDedupConfig(threshold=threshold)
    start = time.perf_counter()
    stage = NearDedupStage(work / "near_dedup", config)
    shards = []
    for i in range(0, len(corpus), shard_rows):
        part = corpus[i:i + shard_rows]
        path = work / "input" / f"part-{i // shard_rows:05d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"id": [d["id"] for d in part], "text": [d["text"] for d in part],
                                 "script": [d["script"] for d in part],
                                 "n_chars": pa.array([len(d["text"]) for d in part], pa.int32()),
                                 "meta": ["{}"] * len(part)}), path)
        shards.append(path)
    start = time.perf_counter()  # input shards written; time the dedup itself
    for path in shards:
        stage.index_shard(path)
    names = [p.stem for p in shards]
    for part in stage.partitions():
        stage.bucket(names, part)
    stage.plan(names)
    seconds = time.perf_counter() - start
    removed = {r["id"]: r["dup_of"] for p in shards for r in pq.read_table(stage.decisions_path(p.stem)).to_pylist()}
    return {"removed": removed, "seconds": seconds, "peak_rss_mb": peak_rss_mb()}


def run_datasketch(corpus: list[dict], threshold: float, num_perm: int = 128) -> dict:
    from datasketch import MinHash, MinHashLSH
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    start = time.perf_counter()
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    edges = []
    for index, doc in enumerate(corpus):
        minhash = MinHash(num_perm=num_perm)
        minhash.update_batch([s.encode() for s in shingles(doc["text"], doc["script"], 3, 4)])
        edges.extend((index, other) for other in lsh.query(minhash))
        lsh.insert(index, minhash)
    n = len(corpus)
    pairs = np.array(edges, dtype=np.int64).reshape(-1, 2)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    first = {}
    removed = {}
    for index, label in enumerate(labels):
        if label in first:
            removed[corpus[index]["id"]] = corpus[first[label]]["id"]
        else:
            first[label] = index
    return {"removed": removed, "seconds": time.perf_counter() - start, "peak_rss_mb": peak_rss_mb()}


def run_text_dedup(corpus: list[dict], threshold: float, python: str, work: Path) -> dict:
    """text-dedup's MinHash CLI on a local dataset; clusters read back from its cluster column."""
    data = work / "text_dedup_input"
    script = f"""
import datasets, json, sys
rows = [json.loads(line) for line in open({str(work / 'corpus.jsonl')!r})]
datasets.Dataset.from_list(rows).save_to_disk({str(data)!r})
"""
    with (work / "corpus.jsonl").open("w") as f:
        for index, doc in enumerate(corpus):
            f.write(json.dumps({"text": doc["text"], "doc": index}, ensure_ascii=False) + "\n")
    subprocess.run([python, "-c", script], check=True)
    out = work / "text_dedup_output"
    algorithm = {"algorithm_name": "minhash", "text_column": "text", "num_perm": 128, "threshold": threshold,
                 "ngram_size": 3, "min_length": 0, "num_proc": 1}  # min_length 0: its default 5 drops short docs
    command = [python, "-m", "text_dedup.minhash",
               "--input", json.dumps({"input_type": "local_hf_dataset", "read_arguments": {"dataset_path": str(data)}}),
               "--algorithm", json.dumps(algorithm), "--output", json.dumps({"output_dir": str(out)}),
               "--debug", "{}"]
    measured = ["/usr/bin/time", "-f", "%M", *command]
    start = time.perf_counter()
    result = subprocess.run(measured, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        return {"error": result.stderr[-2000:]}
    peak_kb = int(result.stderr.strip().splitlines()[-1])
    reader = f"import datasets, json; print(json.dumps(list(datasets.load_from_disk({str(out)!r})['doc'])))"
    kept = set(json.loads(subprocess.run([python, "-c", reader], capture_output=True, text=True,
                                         check=True).stdout))
    removed = {corpus[i]["id"]: None for i in range(len(corpus)) if i not in kept}  # keepers unknown
    return {"removed": removed, "seconds": seconds, "peak_rss_mb": peak_kb / 1024}


def near_duplicates(corpus: list[dict], threshold: float) -> dict[str, set[str]]:
    """For each document, the others at exact Jaccard ≥ threshold (planted or natural: FLORES
    dialect translations are sometimes near-identical)."""
    sets = [frozenset(shingles(d["text"], d["script"], 3, 4)) for d in corpus]
    postings: dict[str, list[int]] = {}
    for index, shingle_set in enumerate(sets):
        for shingle in shingle_set:
            postings.setdefault(shingle, []).append(index)
    found: dict[str, set[str]] = {}
    for index, shingle_set in enumerate(sets):
        shared: dict[int, int] = {}
        for shingle in shingle_set:
            for other in postings[shingle]:
                if other != index:
                    shared[other] = shared.get(other, 0) + 1
        found[corpus[index]["id"]] = {corpus[o]["id"] for o, n in shared.items()
                                      if n / (len(shingle_set) + len(sets[o]) - n) >= threshold}
    return found


def score(corpus: list[dict], result: dict, threshold: float, similar: dict[str, set[str]]) -> dict:
    """Scored the same way for every tool, from the set of removed documents alone.

    recall: planted pairs at Jaccard ≥ threshold of which at least one member was removed;
    precision: removed documents with a near-duplicate (Jaccard ≥ threshold) that was kept.
    """
    removed = set(result["removed"])
    positives = [d for d in corpus if "parent" in d and d["jaccard"] >= threshold]
    recall = sum(d["id"] in removed or d["parent"] in removed for d in positives) / max(len(positives), 1)
    precision = sum(bool(similar[i] - removed) for i in removed) / max(len(removed), 1)
    f1 = 2 * precision * recall / (precision + recall) if precision and recall else 0.0
    return {"removed": len(removed), "precision": round(precision, 4), "recall": round(recall, 4),
            "f1": round(f1, 4), "docs_per_s": round(len(corpus) / result["seconds"]),
            "seconds": round(result["seconds"], 1), "peak_rss_mb": round(result["peak_rss_mb"])}


def _in_child(name: str, *args) -> dict:
    runner = {"ours": run_ours, "datasketch": run_datasketch}[name]
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(runner, args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sib", type=Path, default=ROOT.parent / "shared" / "data" / "sib200")
    parser.add_argument("--varieties", type=int, default=205)
    parser.add_argument("--per-variety", type=int, default=200)
    parser.add_argument("--share", type=float, default=0.2, help="share of documents given a planted copy")
    parser.add_argument("--threshold", type=float, default=0.8)
    parser.add_argument("--text-dedup-python", help="python of a venv with text-dedup==0.4.1")
    args = parser.parse_args()
    corpus = load_corpus(args.sib, args.varieties, args.per_variety, args.share)
    similar = near_duplicates(corpus, args.threshold)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        ours = _in_child("ours", corpus, args.threshold, Path(tmp))
        rows["curation (this project)"] = score(corpus, ours, args.threshold, similar)
        sketch = _in_child("datasketch", corpus, args.threshold)
        rows["datasketch 2.0.0"] = score(corpus, sketch, args.threshold, similar)
        if args.text_dedup_python:
            result = run_text_dedup(corpus, args.threshold, args.text_dedup_python, Path(tmp))
            rows["text-dedup 0.4.1"] = (score(corpus, result, args.threshold, similar) if "error" not in result
                                        else {"error": result["error"][-300:]})
    ours = rows["curation (this project)"]
    for name, row in rows.items():
        if "docs_per_s" in row and name != "curation (this project)":
            row["our_speed_ratio"] = round(ours["docs_per_s"] / row["docs_per_s"], 2)
    planted = [d for d in corpus if "parent" in d]
    header = (f"# Near-duplicate detection on SIB-200 ({len(corpus)} documents, {len(planted)} planted copies, "
              f"{sum(d['jaccard'] >= args.threshold for d in planted)} at Jaccard ≥ {args.threshold})\n\n")
    columns = ["removed", "precision", "recall", "f1", "docs_per_s", "seconds", "peak_rss_mb", "our_speed_ratio"]
    table = "| tool | " + " | ".join(columns) + " |\n|---|" + "---|" * len(columns) + "\n"
    for name, row in rows.items():
        table += f"| {name} | " + " | ".join(str(row.get(c, row.get("error", ""))) for c in columns) + " |\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "dedup.md").write_text(header + table)
    (RESULTS / "dedup.json").write_text(json.dumps(rows, indent=2))
    print(header + table)


if __name__ == "__main__":
    main()
