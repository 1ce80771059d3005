"""Language ID throughput and accuracy: the LID stage vs raw fastText on the same real texts.

Texts: every SIB-200 dev sentence (205 varieties × 99). Raw fastText is the floor any wrapper
pays for: `model.predict(list_of_texts, k=1)` with the same lid.176.ftz. The stage adds Unicode
normalisation, script detection, FLORES mapping, thresholds and the code-mixing check.
Results go to bench/results/lid.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import fasttext

from curation.config import LidConfig
from curation.lid import DEFAULT_MODEL, LanguageIdentifier, language_code
from curation.lid_eval import read_sib_split

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sib", type=Path, default=ROOT.parent / "shared" / "data" / "sib200")
    parser.add_argument("--repeat", type=int, default=3, help="timed passes over the corpus (best is kept)")
    args = parser.parse_args()
    gold, texts = [], []
    for variety in sorted(p.name for p in args.sib.iterdir() if (p / "dev.tsv").exists()):
        rows = read_sib_split(args.sib / variety, "dev")
        gold += [variety] * len(rows)
        texts += [r["text"] for r in rows]

    raw = fasttext.load_model(str(DEFAULT_MODEL))
    flat = [t.replace("\n", " ") for t in texts]
    stage = LanguageIdentifier(LidConfig(threshold=0.0))

    def best_time(fn) -> tuple[float, object]:
        times, out = [], None
        for _ in range(args.repeat):
            start = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - start)
        return min(times), out

    raw_s, (raw_labels, _) = best_time(lambda: raw.predict(flat, k=1))
    stage_s, preds = best_time(lambda: [p for i in range(0, len(texts), 4096)
                                        for p in stage.predict(texts[i:i + 4096])])
    known = stage.codes()
    covered = [i for i, g in enumerate(gold) if g.split("_")[0] in known]
    raw_lang_acc = sum(language_code(raw_labels[i][0]) == gold[i].split("_")[0] for i in covered) / len(covered)
    stage_lang_acc = sum(preds[i].lang.split("_")[0] == gold[i].split("_")[0] for i in covered) / len(covered)
    stage_exact_acc = sum(preds[i].lang == gold[i] for i in covered) / len(covered)
    result = {
        "texts": len(texts), "covered_texts": len(covered),
        "raw_fasttext": {"texts_per_s": round(len(texts) / raw_s), "language_accuracy": round(raw_lang_acc, 4)},
        "lid_stage": {"texts_per_s": round(len(texts) / stage_s), "language_accuracy": round(stage_lang_acc, 4),
                      "flores_code_accuracy": round(stage_exact_acc, 4)},
    }
    result["speed_ratio_stage_vs_raw"] = round(raw_s / stage_s, 3)
    table = (f"# Language ID on SIB-200 dev ({len(texts)} texts, {len(covered)} in languages lid.176 knows)\n\n"
             "| | texts/s | language accuracy | FLORES code accuracy |\n|---|---|---|---|\n"
             f"| raw fastText predict | {result['raw_fasttext']['texts_per_s']} | {raw_lang_acc:.4f} | - |\n"
             f"| LID stage | {result['lid_stage']['texts_per_s']} | {stage_lang_acc:.4f} | {stage_exact_acc:.4f} |\n\n"
             f"Stage speed / raw speed: {result['speed_ratio_stage_vs_raw']}\n")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "lid.md").write_text(table)
    (RESULTS / "lid.json").write_text(json.dumps(result, indent=2))
    print(table)


if __name__ == "__main__":
    main()
