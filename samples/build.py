"""Rebuild the demo samples from ../shared/data (run from the repo root; the output is committed).

SIB-200: 12 languages × 40 training sentences (+ an exact and a near-duplicate copy of some).
XLM-T: 6 languages × 30 tweets. messy.jsonl: hand-made bad rows that ingest must quarantine.
"""

import csv
import json
import random
from pathlib import Path

SHARED = Path("../shared/data")
OUT = Path("samples")
SIB_LANGS = ["eng_Latn", "fra_Latn", "deu_Latn", "spa_Latn", "yor_Latn", "hin_Deva", "arb_Arab",
             "zho_Hans", "jpn_Jpan", "rus_Cyrl", "swh_Latn", "tha_Thai"]
XLMT_LANGS = ["arabic", "english", "french", "german", "hindi", "spanish"]


def sib() -> None:
    rng = random.Random(0)
    with (OUT / "sib200.jsonl").open("w", encoding="utf-8") as out:
        for lang in SIB_LANGS:
            with (SHARED / "sib200" / lang / "train.tsv").open(encoding="utf-8", newline="") as f:
                rows = list(csv.DictReader(f, delimiter="\t"))[:40]
            for row in rows:
                out.write(json.dumps({"id": f"{lang}/{row['index_id']}", "text": row["text"],
                                      "label": row["category"], "flores": lang}, ensure_ascii=False) + "\n")
            for row in rng.sample(rows, 3):  # a re-crawled exact copy
                out.write(json.dumps({"id": f"{lang}/{row['index_id']}-copy", "text": row["text"],
                                      "label": row["category"], "flores": lang}, ensure_ascii=False) + "\n")
            for row in rng.sample(rows, 3):  # a near copy: one trailing clause added
                out.write(json.dumps({"id": f"{lang}/{row['index_id']}-near", "text": row["text"] + " (2019)",
                                      "label": row["category"], "flores": lang}, ensure_ascii=False) + "\n")


def xlmt() -> None:
    with (OUT / "xlmt.tsv").open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, delimiter="\t")
        writer.writerow(["text", "label", "language"])
        for lang in XLMT_LANGS:
            texts = (SHARED / "xlmt" / lang / "train_text.txt").read_text(encoding="utf-8").splitlines()[:30]
            labels = (SHARED / "xlmt" / lang / "train_labels.txt").read_text().splitlines()[:30]
            writer.writerows([text, label, lang] for text, label in zip(texts, labels))


def messy() -> None:
    lines = [
        json.dumps({"id": "ok-1", "text": "A perfectly normal sentence about the weather in Lagos today."}),
        '{"id": "broken-json", "text": "unterminated',
        json.dumps({"id": "empty", "text": "   \t  "}),
        json.dumps({"id": "number", "text": 12345}),
        json.dumps({"id": "no-text", "body": "text is under the wrong key"}),
        json.dumps(["not", "an", "object"]),
        json.dumps({"id": "huge", "text": "word " * 5000}),
        json.dumps({"id": "ok-2", "text": "Une phrase tout à fait normale sur la météo à Dakar."}),
    ]
    data = "\n".join(lines).encode() + b'\n{"id": "latin1", "text": "caf\xe9 cr\xe8me"}\n'
    (OUT / "messy.jsonl").write_bytes(data)


if __name__ == "__main__":
    sib()
    xlmt()
    messy()
