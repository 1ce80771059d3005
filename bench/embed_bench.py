"""Embedding stage throughput vs a bare `SentenceTransformer.encode` of the same texts, in one run.

Texts: SIB-200 dev sentences from 40 varieties (real, mixed lengths and scripts). Both sides use
the same loaded model, batch size and E5 prompt; the stage adds length sorting, the float16 copy
and the atomic .npy write. Goal: stage ≥ 0.95× bare. Results: bench/results/embed.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import pyarrow as pa

from curation.config import EmbedConfig
from curation.embed import EmbedStage, _embedder
from curation.encoder import default_device
from curation.lid_eval import read_sib_split

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sib", type=Path, default=ROOT.parent / "shared" / "data" / "sib200")
    parser.add_argument("--varieties", type=int, default=40)
    parser.add_argument("--per-variety", type=int, default=25)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    names = sorted(p.name for p in args.sib.iterdir() if p.is_dir())[:: max(1, 205 // args.varieties)]
    texts = [r["text"] for v in names[: args.varieties]
             for r in read_sib_split(args.sib / v, "dev")[: args.per_variety]]
    config = EmbedConfig(enabled=True, batch_size=args.batch_size)
    model = _embedder(config.model_dump_json()).model
    table = pa.table({"id": [str(i) for i in range(len(texts))], "text": texts})
    model.encode(texts[:64], batch_size=args.batch_size, prompt_name="passage")  # warm-up
    timings = {"bare": [], "stage": []}
    with tempfile.TemporaryDirectory() as tmp:
        stage = EmbedStage(Path(tmp), config)
        for _ in range(2):  # alternate, keep the best of each
            start = time.perf_counter()
            model.encode(texts, batch_size=args.batch_size, prompt_name="passage", normalize_embeddings=True)
            timings["bare"].append(time.perf_counter() - start)
            start = time.perf_counter()
            stage.process(table, "part-00000")
            timings["stage"].append(time.perf_counter() - start)
    bare, staged = len(texts) / min(timings["bare"]), len(texts) / min(timings["stage"])
    result = {"texts": len(texts), "device": default_device(), "batch_size": args.batch_size,
              "bare_encode_texts_per_s": round(bare, 1), "stage_texts_per_s": round(staged, 1),
              "ratio": round(staged / bare, 3)}
    (ROOT / "bench" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "results" / "embed.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
