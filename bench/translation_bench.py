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
from collections import defaultdict
from pathlib import Path

import numpy as np

from curation.config import SemDedupConfig
from curation.lid_eval import read_sib_split
from curation.semdedup import translation_pairs
from curation.simulate import embed_cached

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sib", type=Path, default=ROOT.parent / "shared" / "data" / "sib200")
    parser.add_argument("--varieties", type=int, default=20)
    parser.add_argument("--model", default="e5-small")
    args = parser.parse_args()
    names = sorted(p.name for p in args.sib.iterdir() if p.is_dir())
    names = names[:: max(1, len(names) // args.varieties)][: args.varieties]
    rows = [(v, r["index_id"], r["text"]) for v in names for r in read_sib_split(args.sib / v, "dev")]
    vectors = embed_cached([r[2] for r in rows], args.model)
    defaults = SemDedupConfig()
    langs = np.array([r[0] for r in rows], dtype=object)
    pairs = translation_pairs(vectors, langs, defaults.translation_min_cosine, defaults.neighbours,
                              defaults.flat_below)
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
    result = {"model": args.model, "varieties": names, "records": len(rows), "flagged_pairs": len(pairs),
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
