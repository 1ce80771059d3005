"""Evaluate language ID on SIB-200 (FLORES-200 sentences, 205 language-script varieties)."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

from tqdm.auto import tqdm

from curation.config import LidConfig
from curation.lid import LanguageIdentifier


def read_sib_split(variety_dir: Path, split: str) -> list[dict]:
    with (variety_dir / f"{split}.tsv").open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def evaluate_sib(sib_dir: Path, config: LidConfig, split: str = "dev", varieties: list[str] | None = None) -> dict:
    """Per-variety accuracy (exact FLORES code) for the varieties whose language the model knows."""
    identifier = LanguageIdentifier(config)
    known = identifier.codes()
    names = varieties or sorted(p.name for p in sib_dir.iterdir() if (p / f"{split}.tsv").exists())
    rows = []
    for variety in tqdm(names, desc="lid-eval", unit="variety"):
        texts = [r["text"] for r in read_sib_split(sib_dir / variety, split)]
        predictions = identifier.predict(texts)
        predicted = [p.lang for p in predictions]
        top1 = [p.topk[0]["lang"] for p in predictions]
        language = variety.split("_")[0]
        confusion = Counter(p for p in predicted if p != variety).most_common(1)
        rows.append({
            "variety": variety, "covered": language in known, "n": len(texts),
            "accuracy": round(sum(p == variety for p in predicted) / len(texts), 4),
            "top1_accuracy": round(sum(p == variety for p in top1) / len(texts), 4),
            "language_accuracy": round(sum(p.split("_")[0] == language for p in predicted) / len(texts), 4),
            "undetermined": round(predicted.count("und") / len(texts), 4),
            "top_confusion": confusion[0][0] if confusion else "",
        })
    covered = [r for r in rows if r["covered"]]
    worst = min(covered, key=lambda r: r["accuracy"]) if covered else None
    summary = {
        "split": split, "varieties": len(rows), "covered": len(covered),
        "mean_accuracy": round(sum(r["accuracy"] for r in covered) / len(covered), 4) if covered else None,
        "mean_top1_accuracy": round(sum(r["top1_accuracy"] for r in covered) / len(covered), 4) if covered else None,
        "worst": worst and {"variety": worst["variety"], "accuracy": worst["accuracy"]},
        "gap": round(max(r["accuracy"] for r in covered) - worst["accuracy"], 4) if covered else None,
    }
    return {"summary": summary, "rows": rows}


def to_markdown(result: dict) -> str:
    s = result["summary"]
    lines = [f"# Language ID on SIB-200 {s['split']}",
             f"{s['covered']} of {s['varieties']} varieties covered by the model; mean accuracy on covered "
             f"{s['mean_accuracy']}, worst {s['worst']}, gap {s['gap']}.", "",
             "`accuracy`: exact FLORES code after the confidence threshold ('und' counts as wrong); "
             "`top1_accuracy`: the model's first guess, no threshold; `language_accuracy`: language right, "
             "script ignored.", "",
             "| variety | covered | n | accuracy | top1_accuracy | language_accuracy | undetermined | top_confusion |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['variety']} | {'yes' if r['covered'] else 'no'} | {r['n']} | {r['accuracy']} | "
              f"{r['top1_accuracy']} | {r['language_accuracy']} | {r['undetermined']} | {r['top_confusion']} |"
              for r in result["rows"]]
    return "\n".join(lines) + "\n"
