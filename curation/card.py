"""The data card of an export, in Hugging Face dataset-card form (YAML header, then Markdown), with
a PNG: per-language rows through the pipeline and the train mixture's target vs achieved shares."""

from __future__ import annotations

import json
import os
from pathlib import Path

import matplotlib.pyplot as plt
import yaml

from curation.config import CurateConfig, is_local
from curation.ingest import STAGE as INGEST
from curation.pipeline import stage_names
from curation.report import language_table, markdown_table, plot_languages, save_figure, stage_table
from curation.shards import atomic_write_bytes

LIMITATIONS = [
    "Language tags come from fastText lid.176: close varieties are folded together (e.g. arz → arb, "
    "bho/mai → hin, zsm → ind) and romanised text often lands in `und`.",
    "Translations are linked only when the semdedup stage flagged them (pair precision ~0.98, record "
    "recall ~0.78 on SIB-200): an unflagged translation may still sit in another split.",
    "Upsampled languages repeat rows in train (see `epochs` in the mixture table).",
]
SYNTHETIC_LIMITATION = "Back-translated rows (label_provenance `synthetic`) passed automatic guards; no one read them."


def size_category(rows: int) -> str:
    for bound, name in [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")]:
        if rows < bound:
            return name
    return "n>1M"


def _stage_stats(config: CurateConfig) -> list[dict]:
    paths = [Path(config.run_dir) / stage / "stats.json" for stage in [INGEST, *stage_names(config)]]
    return [json.loads(p.read_text()) for p in paths if p.exists()]


def write_card(config: CurateConfig, summary: dict, out: Path) -> Path:
    """README.md (the card) and card.png beside the exported shards; returns the card's path."""
    stats = _stage_stats(config)
    language_rows = language_table(stats)
    languages = sorted({lang for s in summary["splits"].values() for lang in s["languages"]})
    codes = sorted({lang.split("_")[0] for lang in languages} - {"und"})
    header = {"language": codes, "license": config.export.license,
              "task_categories": [config.export.task], "size_categories": [size_category(summary["rows"])],
              "configs": [{"config_name": "default", "data_files": [
                  {"split": name, "path": f"data/{name}-*.parquet"} for name in summary["splits"]]}]}
    splits = [{"split": name, "rows": s["rows"], "files": len(s["files"]), "languages": len(s["languages"])}
              for name, s in summary["splits"].items()]
    per_language = [{"lang": lang, **{name: s["languages"].get(lang, 0) for name, s in summary["splits"].items()}}
                    for lang in languages]
    mixture = summary.get("mixture", {})
    synthetic = summary["splits"].get("train", {}).get("provenance", {}).get("synthetic", 0)
    body = [
        f"# Curated multilingual dataset: `{Path(config.run_dir).name}`",
        "## Sources\n" + "\n".join(f"- `{s.name}`: {_shown(s.path)}" for s in config.sources),
        "## Pipeline (rows in = kept + dropped + quarantined, with reasons)", markdown_table(stage_table(stats)),
        "Duplicate rates: " + (", ".join(f"{s['stage']} {sum(s['dropped'].values()) / max(s['rows_in'], 1):.1%}"
                                         for s in stats if "dedup" in s["stage"]) or "no dedup stage ran") + ".",
        "## Languages before and after curation", markdown_table(language_rows) or "(no language column)",
        "## Splits\nDrawn per group: a record and its flagged translations never cross splits "
        f"(groups spanning splits: {summary['leaks']}).", markdown_table(splits),
        "## Rows per language and split", markdown_table(per_language),
        "## Labels\nProvenance of the labels (source = the input data, human = verified in Argilla): "
        + ", ".join(f"{k} {v}" for k, v in summary["label_provenance"].items())
        + f". Synthetic rows in train: {synthetic}.",
        "## Train mixture\n" + ("```json\n" + json.dumps(mixture.get("settings", {}), indent=1) + "\n```"),
        markdown_table([{k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}
                        for row in mixture.get("report", [])]),
        *_augment_section(summary.get("augment")),
        "![card](card.png)",
        "## Known limitations\n" + "\n".join(
            f"- {line}" for line in LIMITATIONS + [SYNTHETIC_LIMITATION] * bool(summary.get("augment"))),
    ]
    _plot(language_rows, mixture.get("report", []), out / "card.png")
    card = out / "README.md"
    atomic_write_bytes(card, ("---\n" + yaml.safe_dump(header, sort_keys=False) + "---\n\n"
                              + "\n\n".join(body) + "\n").encode())
    if config.export.card_dir:  # the team's catalogue of cards, e.g. the repository's data_cards/
        copy = Path(config.export.card_dir) / Path(config.run_dir).name
        copy.mkdir(parents=True, exist_ok=True)
        for name in ("README.md", "card.png"):
            atomic_write_bytes(copy / name, (out / name).read_bytes())
    return card


def _shown(path: str) -> str:
    """A source as a reader of the card should see it: URLs as given, local paths without this machine's
    folders (relative to the working directory when under it, else the file name)."""
    if not is_local(path):
        return path
    local = Path(os.path.normpath(path.removeprefix("file://")))
    return str(local.relative_to(Path.cwd())) if local.is_relative_to(Path.cwd()) else local.name


def _augment_section(stats: dict | None) -> list[str]:
    """Back-translation: acceptance per language and how many candidates failed each guard."""
    if not stats:
        return []
    rows = [{"lang": lang, "candidates": s["candidates"], "accepted": s["accepted"],
             "acceptance": s["acceptance_rate"], "cap": s["cap"], **{g: s["failed"].get(g, 0) for g in stats["guards"]}}
            for lang, s in stats["languages"].items()]
    guards = ", ".join(f"{name} {g['acceptance_rate']:.1%}" for name, g in stats["guards"].items())
    return [f"## Back-translation ({stats['backend']})\n{stats['accepted']} of {stats['candidates']} round trips "
            f"accepted. Pass rate per guard: {guards}. Failures per language and guard (a row can fail several):",
            markdown_table(rows)]


def _plot(languages: list[dict], mixture: list[dict], path: Path) -> None:
    fig, (ax_lang, ax_mix) = plt.subplots(1, 2, figsize=(15, 5))
    plot_languages(ax_lang, languages)
    langs = [r["lang"] for r in mixture]
    positions = range(len(langs))
    for offset, key, label in [(-0.3, "natural_share", "natural"), (0.0, "target_share", "target"),
                               (0.3, "achieved_share", "achieved")]:
        ax_mix.bar([p + offset for p in positions], [r[key] for r in mixture], width=0.3, label=label)
    ax_mix.set_xticks(list(positions), langs, rotation=90)
    ax_mix.set_title("train mixture: share per language")
    ax_mix.legend()
    save_figure(fig, path)
