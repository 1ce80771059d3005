"""Rewrite the README's benchmark summary (between the `bench:begin` / `bench:end` markers) from
bench/results/: one row per claim, ours against the best peer measured in the same run."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
BEGIN, END = "<!-- bench:begin (bench/readme.py writes this table) -->", "<!-- bench:end -->"


def _load(name: str) -> dict | list | None:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else None


def claims() -> list[str]:
    rows = []
    if lid := _load("lid.json"):
        ours, raw = lid["lid_stage"], lid["raw_fasttext"]
        rows.append(f"| Language ID | {ours['texts_per_s']:,} texts/s, accuracy {ours['language_accuracy']:.3f} | "
                    f"raw fastText: {raw['texts_per_s']:,} texts/s, {raw['language_accuracy']:.3f} | "
                    f"{lid['speed_ratio_stage_vs_raw']:.2f}× speed | SIB-200 dev, {lid['texts']:,} texts |")
    if dedup := _load("dedup.json"):
        ours = dedup.pop("curation (this project)")
        name, peer = max(dedup.items(), key=lambda item: item[1]["f1"])
        rows.append(f"| Near dedup | F1 {ours['f1']:.3f}, {ours['docs_per_s']:,} docs/s | {name}: F1 {peer['f1']:.3f}, "
                    f"{peer['docs_per_s']:,} docs/s | {peer['our_speed_ratio']:.1f}× speed | SIB-200 train + "
                    "planted copies |")
    if scale := _load("dedup_scale.json"):
        rows.append(f"| Near dedup at scale | {scale['docs_per_s']:,} docs/s, {scale['peak_rss_mb']:,} MB peak "
                    f"| – | – | {scale['rows']:,} docs from SIB-200 |")
    if embed := _load("embed.json"):
        rows.append(f"| Embedding ({embed['device']}) | {embed['stage_texts_per_s']} texts/s | bare "
                    f"`SentenceTransformer.encode`: {embed['bare_encode_texts_per_s']} texts/s | "
                    f"{embed['ratio']:.3f}× | SIB-200 dev, {embed['texts']:,} texts |")
    if coverage := _load("coverage.json"):
        largest = coverage["sizes"][-1]
        ours, peer = largest["stage"], largest["in_memory"]
        rows.append(f"| Coverage (FAISS) | {ours['total_s']:.0f} s, {ours['peak_rss_gb']:.2f} GB peak | one process, "
                    f"all vectors in RAM ({peer['index']}): {peer['total_s']:.0f} s, {peer['peak_rss_gb']:.2f} GB | "
                    f"{1 / largest['time_ratio']:.1f}× speed, density Spearman {largest['density_spearman']:.3f} | "
                    f"{largest['rows']:,} × {largest['dim']} vectors from e5 SIB-200 |")
    for task, label in (("al_sib200", "SIB-200"), ("al_xlmt", "XLM-T")):
        if simulation := _load(f"{task}/simulation.json"):
            aulc = {name: s["aulc_mean"] for name, s in simulation["summary"].items()}
            peer = max((k for k in aulc if k.startswith("st_")), key=aulc.get)
            rows.append(f"| Active learning, {label} | hybrid AULC {aulc['hybrid']:.4f} (random {aulc['random']:.4f}) "
                        f"| small-text {peer[3:]}: {aulc[peer]:.4f} | {aulc['hybrid'] - aulc[peer]:+.4f} AULC "
                        f"| {len(simulation['seeds'])} seeds × {simulation['rounds']} rounds |")
    header = ["| claim | ours | best peer, same run | ratio | data |", "|---|---|---|---|---|"]
    return header + rows


def end_to_end() -> list[str]:
    runs = _load("e2e.json") or []
    if not runs:
        return []
    stages = list(dict.fromkeys(s for r in runs for s in r["stages"]))
    lines = ["", "End to end (`bench/e2e_bench.py`, documents generated from SIB-200 and XLM-T, LocalExecutor, "
             "docs/s and peak RSS per stage; every document is labeled and then exported, which the whole-run "
             "figure leaves out):", "",
             "| docs | " + " | ".join(stages) + " | whole run | peak RSS |", "|---" * (len(stages) + 3) + "|"]
    for r in runs:
        cells = [f"{r['stages'][s]['docs_per_s']:,}/s, {r['stages'][s]['peak_rss_mb']:,} MB" if s in r["stages"]
                 else "–" for s in stages]
        lines.append(f"| {r['docs']:,} | " + " | ".join(cells) + f" | {r['docs_per_s']:,} docs/s "
                     f"({r['seconds']:.0f} s) | {r['peak_rss_mb']:,} MB |")
    return lines


def gpu() -> list[str]:
    results = _load("gpu.json")
    if not results:
        return ["", "GPU: no GPU was lent to this work, so `bench/gpu_bench.py` has no results yet."]
    return ["", f"GPU ({results['device']}): "
            + "; ".join(f"{name} {value}" for name, value in results["measured"].items()) + "."]


def main() -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    block = "\n".join([BEGIN, *claims(), *end_to_end(), *gpu(), END])
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise SystemExit(f"README.md has no {BEGIN} … {END} block")
    readme.write_text(pattern.sub(lambda _: block, text))
    print(block)


if __name__ == "__main__":
    main()
