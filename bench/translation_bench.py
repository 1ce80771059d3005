"""How well semdedup's translation flag finds SIB-200's parallel sentences.

SIB-200 gives the same sentence (`index_id`) in every variety: every cross-language pair with one
index_id is a true translation. Records: the dev split of `--varieties` varieties (spread over
scripts). Reports pair precision, pair recall (over all true pairs) and record recall (records
flagged with at least one true translation), per language too (worst and gap).
Results: bench/results/translations.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curation.config import SemDedupConfig
from curation.lid_eval import read_sib_split
from curation.semdedup import SemDedupStage
from curation.simulate import embed_cached

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from clustered_run import run_clustered, write_embedded  # noqa: E402


def flagged_pairs(vectors: np.ndarray, langs: np.ndarray, config: SemDedupConfig) -> np.ndarray:
    """The translation pairs (row numbers) the semdedup stage flags."""
    records = pa.table({"id": [str(i) for i in range(len(vectors))], "lang": langs.tolist(),
                        "n_chars": [0] * len(vectors)})
    with tempfile.TemporaryDirectory() as folder:
        shards = write_embedded(Path(folder), ((vectors[i:i + 1000], records.slice(i, 1000))
                                               for i in range(0, len(vectors), 1000)))
        run_clustered(SemDedupStage, config, Path(folder), shards)
        flags = pq.read_table(list(Path(folder, "semdedup", "_work", "translations").glob("*.parquet")))
    pairs = np.array([flags.column("id").to_pylist(), flags.column("translation").to_pylist()], dtype=np.int64).T
    return pairs[pairs[:, 0] < pairs[:, 1]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sib", type=Path, default=ROOT.parent / "shared" / "data" / "sib200")
    parser.add_argument("--varieties", type=int, default=20)
    parser.add_argument("--model", default="e5-small")
    parser.add_argument("--probe", type=int, default=SemDedupConfig().probe)
    args = parser.parse_args()
    names = sorted(p.name for p in args.sib.iterdir() if p.is_dir())
    names = names[:: max(1, len(names) // args.varieties)][: args.varieties]
    rows = [(v, r["index_id"], r["text"]) for v in names for r in read_sib_split(args.sib / v, "dev")]
    vectors = embed_cached([r[2] for r in rows], args.model)
    langs = np.array([r[0] for r in rows], dtype=object)
    pairs = flagged_pairs(vectors, langs, SemDedupConfig(enabled=True, probe=args.probe))
    correct = [rows[i][1] == rows[j][1] for i, j in pairs]
    per_sentence = defaultdict(int)
    for _, index_id, _ in rows:
        per_sentence[index_id] += 1
    true_pairs = sum(n * (n - 1) // 2 for n in per_sentence.values())
    flagged_right = defaultdict(bool)
    for (i, j), ok in zip(pairs, correct):
        if ok:
            flagged_right[i] = flagged_right[j] = True
    per_language = {v: round(float(np.mean([flagged_right[k] for k in np.flatnonzero(langs == v)])), 4)
                    for v in names}
    worst = min(per_language, key=per_language.get)
    result = {"model": args.model, "probe": args.probe, "varieties": names, "records": len(rows),
              "flagged_pairs": len(pairs),
              "pair_precision": round(float(np.mean(correct)), 4) if len(pairs) else None,
              "pair_recall": round(sum(correct) / true_pairs, 4),
              "record_recall": round(sum(flagged_right.values()) / len(rows), 4),
              "record_recall_per_language": per_language, "worst": {worst: per_language[worst]},
              "gap": round(max(per_language.values()) - per_language[worst], 4)}
    out = ROOT / "bench" / "results" / f"translations-{args.model}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "record_recall_per_language"}, indent=2))


if __name__ == "__main__":
    main()
