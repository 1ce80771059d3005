"""End to end: the curate pipeline on N documents generated from real multilingual text.

Documents: SIB-200 sentences (train + dev, 205 varieties) and XLM-T tweets (6 languages), ~176k
in all. Every document picks one at random and is two sentences of its variety joined (60%), an
edited copy of it (a near duplicate, 20%) or the sentence as is (20%; repeats become exact
duplicates), so every size has the same mix of lengths and languages; JSONL files of 100k rows.
Each size runs in a fresh process with the LocalExecutor (no Prefect, so nothing but the stages
is timed); a sampling thread records the peak RSS of every stage. Every document is labeled, and
the export (splits, mixture, shards) of all of them is measured after the curate stages (it is
not part of the "whole run" figure). The embedding stages (embed,
coverage, semdedup) run on the CPU at ~110 texts/s, so they are measured on `--embed-docs`
documents only. Results: bench/results/e2e.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
RESULTS = ROOT / "bench" / "results"
FILE_ROWS = 100_000


def generate(shared: Path, total: int, folder: Path) -> None:
    from planted import _edit

    from curation.lid_eval import read_sib_split
    from curation.scripts import detect_scripts

    sib = shared / "sib200"
    base = [(v, r["text"], r["category"]) for v in sorted(p.name for p in sib.iterdir() if p.is_dir())
            for split in ("train", "dev") for r in read_sib_split(sib / v, split)]
    for language in sorted(p.name for p in (shared / "xlmt").iterdir() if p.is_dir()):
        folder_of = shared / "xlmt" / language
        base += [(language, t, label) for t, label in zip((folder_of / "train_text.txt").read_text().splitlines(),
                                                          (folder_of / "train_labels.txt").read_text().splitlines())]
    scripts = detect_scripts([t for _, t, _ in base])
    by_group: dict[str, list[int]] = {}
    for k, (group, _, _) in enumerate(base):
        by_group.setdefault(group, []).append(k)
    vocabulary = [w for _, t, _ in base[:5000] for w in t.split()]
    rng = random.Random(0)
    folder.mkdir(parents=True, exist_ok=True)
    out = None
    for n in range(total):
        if n % FILE_ROWS == 0:
            out and out.close()
            out = (folder / f"docs-{n // FILE_ROWS:04d}.jsonl").open("w", encoding="utf-8")
        k = rng.randrange(len(base))
        group, text, label = base[k]
        kind = rng.random()
        if kind < 0.6:
            text = f"{text} {base[rng.choice(by_group[group])][1]}"  # labeled as its first sentence
        elif kind < 0.8:
            text = _edit(text, scripts[k], rng.randint(1, 8), rng, vocabulary)
        out.write(json.dumps({"id": f"doc-{n}", "text": text, "label": label}, ensure_ascii=False) + "\n")
    out.close()


class TimedExecutor:
    """The LocalExecutor, timing each stage and sampling this process's RSS while it runs."""

    def __init__(self, config):
        from curation.pipeline import LocalExecutor

        self.inner = LocalExecutor(config, progress=False)
        self.stages: dict[str, dict] = {}
        self.current = None
        self.process = psutil.Process()
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while True:
            if self.current:
                rss = self.process.memory_info().rss / 2**20
                entry = self.stages[self.current]
                entry["peak_rss_mb"] = max(entry.get("peak_rss_mb", 0), round(rss))
            time.sleep(0.05)

    def _timed(self, stage: str, call):
        self.current = stage
        self.stages.setdefault(stage, {"seconds": 0.0})
        start = time.perf_counter()
        try:
            return call()
        finally:
            self.stages[stage]["seconds"] += time.perf_counter() - start

    def map(self, step, stage, items):
        return self._timed(stage, lambda: self.inner.map(step, stage, items))

    def call(self, step, stage, shards):
        return self._timed(stage, lambda: self.inner.call(step, stage, shards))


def run(folder: Path, embed: bool) -> dict:
    from curation.config import load_config
    from curation.export import export
    from curation.pipeline import run_pipeline

    settings = {"run_dir": str(folder / "run"), "shard_rows": 50_000,
                "sources": [{"name": "docs", "path": str(folder / "in" / "*.jsonl"), "id_column": "id",
                             "label_column": "label"}],
                **({"embed": {"enabled": True}, "coverage": {"enabled": True}, "semdedup": {"enabled": True}}
                   if embed else {"active_learning": {"pool_stage": "near_dedup"}})}
    (folder / "config.yaml").write_text(yaml.safe_dump(settings))
    config = load_config(folder / "config.yaml")
    executor = TimedExecutor(config)
    start = time.perf_counter()
    summary = run_pipeline(config, executor)
    seconds = time.perf_counter() - start
    rows_in = {s["stage"]: s["rows_in"] for s in summary["stages"]}
    exported = executor._timed("export", lambda: export(config))  # every row is labeled: the largest export
    rows_in["export"] = exported["rows"]
    stages = {name: {"rows_in": rows_in[name], "seconds": round(s["seconds"], 1),
                     "docs_per_s": round(rows_in[name] / s["seconds"]), "peak_rss_mb": s.get("peak_rss_mb")}
              for name, s in executor.stages.items()}
    kept = summary["stages"][-1]["kept"]
    return {"docs": rows_in["ingest"], "kept": kept, "seconds": round(seconds, 1),
            "docs_per_s": round(rows_in["ingest"] / seconds), "stages": stages,
            "peak_rss_mb": max(s["peak_rss_mb"] or 0 for s in stages.values())}


def measure(shared: Path, docs: int, embed: bool) -> dict:
    """One size in a fresh process (so peak RSS belongs to that size alone)."""
    with tempfile.TemporaryDirectory(prefix="e2e-", dir=ROOT.parent) as tmp:
        generate(shared, docs, Path(tmp) / "in")
        output = subprocess.run([sys.executable, __file__, "--run-in", tmp] + ["--embed"] * embed,
                                check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def markdown(results: list[dict]) -> str:
    stages = list(dict.fromkeys(s for r in results for s in r["stages"]))
    lines = ["| docs | " + " | ".join(stages) + " | whole run | peak RSS |", "|---" * (len(stages) + 3) + "|"]
    for r in results:
        cells = [f"{r['stages'][s]['docs_per_s']:,} /s, {r['stages'][s]['peak_rss_mb']} MB" if s in r["stages"]
                 else "–" for s in stages]
        lines.append(f"| {r['docs']:,} | " + " | ".join(cells) + f" | {r['docs_per_s']:,} docs/s, "
                     f"{r['seconds']:.0f} s | {r['peak_rss_mb']:,} MB |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--sizes", default="100000,1000000", help="documents per run, without the embedding stages")
    parser.add_argument("--embed-docs", type=int, default=10_000, help="documents for the run with embed, "
                        "coverage and semdedup (0: skip)")
    parser.add_argument("--run-in", type=Path, help=argparse.SUPPRESS)  # the child process
    parser.add_argument("--embed", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_in:
        print(json.dumps(run(args.run_in, args.embed)))
        return
    results = [measure(args.shared, int(n), False) for n in args.sizes.split(",")]
    if args.embed_docs:
        results.append({**measure(args.shared, args.embed_docs, True), "embedding_stages": True})
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "e2e.json").write_text(json.dumps(results, indent=2))
    (RESULTS / "e2e.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
