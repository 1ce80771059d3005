"""Student fine-tuning and embedding throughput and memory on the accelerator (CUDA when present).

Texts: SIB-200 train sentences of 10 varieties with their topic labels. Measures the embedding
stage's encoder (texts/s) and one pass of each encoder student mode (`finetune` with 8 frozen
layers, `lora`, `lora` per language) in sentences/s, with peak GPU memory from
`torch.cuda.max_memory_allocated`. Writes bench/results/gpu.json only when it ran on a GPU
(`--device cpu` prints the same figures for a CPU, for comparison).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
VARIETIES = ["eng_Latn", "fra_Latn", "hin_Deva", "arb_Arab", "zho_Hans", "rus_Cyrl", "swh_Latn", "tha_Thai",
             "yor_Latn", "jpn_Jpan"]


def _peak_mb(device: str) -> float | None:
    return round(torch.cuda.max_memory_allocated() / 2**20) if device == "cuda" else None


def main() -> None:
    sys.path.insert(0, str(ROOT))
    from curation.config import EmbedConfig, StudentConfig
    from curation.embed import Embedder
    from curation.lid_eval import read_sib_split
    from curation.student import EncoderStudent

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sib", type=Path, default=ROOT.parent / "shared" / "data" / "sib200")
    parser.add_argument("--per-variety", type=int, default=200)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    rows = [(v, r) for v in VARIETIES for r in read_sib_split(args.sib / v, "train")[:args.per_variety]]
    texts = [r["text"] for _, r in rows]
    langs = np.array([v for v, _ in rows], dtype=object)
    classes = sorted({r["category"] for _, r in rows})
    y = np.array([classes.index(r["category"]) for _, r in rows])

    measured: dict[str, str] = {}
    embedder = Embedder(EmbedConfig(enabled=True, device=args.device, batch_size=128))
    embedder.encode(texts[:64])  # warm-up
    start = time.perf_counter()
    embedder.encode(texts)
    measured["embedding"] = f"{len(texts) / (time.perf_counter() - start):,.0f} texts/s (batch 128)"
    for name, settings in {"finetune": {"mode": "finetune"}, "lora": {"mode": "lora"},
                           "lora per language": {"mode": "lora", "adapter_per": "language"}}.items():
        if args.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        student = EncoderStudent(len(classes), StudentConfig(**settings, finetune_epochs=1, batch_size=32,
                                                             calibrate=False))
        start = time.perf_counter()
        student.fit(texts, y, langs)
        seconds = time.perf_counter() - start
        measured[name] = (f"{len(texts) / seconds:,.1f} sentences/s ({student.history.get('device')}, "
                          f"{student.history.get('trainable_parameters'):,} trained weights"
                          + (f", {_peak_mb(args.device):,} MB peak" if args.device == "cuda" else "") + ")")
    result = {"device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu", "texts": len(texts),
              "measured": measured}
    print(json.dumps(result, indent=2))
    if args.device == "cuda":
        (ROOT / "bench" / "results" / "gpu.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
