"""A run's report: a stage table, per-language counts, and a PNG of both, beside the shards."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from curation.shards import atomic_write_bytes, atomic_write_json

_TOP_LANGUAGES = 30


def _reasons(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "-"


def stage_table(stats: list[dict]) -> list[dict]:
    return [{"stage": s["stage"], "shards": s["shards"], "rows_in": s["rows_in"], "kept": s["kept"],
             "dropped": sum(s["dropped"].values()), "quarantined": sum(s["quarantined"].values()),
             "reasons": _reasons({**s["dropped"], **s["quarantined"]})} for s in stats]


def language_table(stats: list[dict]) -> list[dict]:
    """Rows per language after language ID and after the last stage."""
    with_lang = [s for s in stats if s["languages"]]
    if not with_lang:
        return []
    first, last = with_lang[0]["languages"], with_lang[-1]["languages"]
    rows = [{"lang": lang, "identified": n, "kept": last.get(lang, 0),
             "kept_share": round(last.get(lang, 0) / n, 4)} for lang, n in first.items()]
    return sorted(rows, key=lambda r: -r["identified"])


def markdown_table(table: list[dict]) -> str:
    if not table:
        return ""
    head = list(table[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(row[h]) for h in head) + " |" for row in table]
    return "\n".join(lines)


def _plot(stages: list[dict], languages: list[dict], path: Path) -> None:
    fig, (ax_stage, ax_lang) = plt.subplots(1, 2, figsize=(14, 5), gridspec_kw={"width_ratios": [1, 2]})
    names = [s["stage"] for s in stages]
    ax_stage.bar(names, [s["kept"] for s in stages], label="kept")
    ax_stage.bar(names, [s["dropped"] for s in stages], bottom=[s["kept"] for s in stages], label="dropped")
    ax_stage.bar(names, [s["quarantined"] for s in stages],
                 bottom=[s["kept"] + s["dropped"] for s in stages], label="quarantined")
    ax_stage.set_title("rows per stage")
    ax_stage.legend()
    ax_stage.tick_params(axis="x", rotation=30)
    plot_languages(ax_lang, languages)
    save_figure(fig, path)


def plot_languages(ax: plt.Axes, languages: list[dict]) -> None:
    """Rows per language (from `language_table`): identified, and kept after the last stage."""
    top = languages[:_TOP_LANGUAGES]
    ax.bar([r["lang"] for r in top], [r["identified"] for r in top], label="identified", color="lightgray")
    ax.bar([r["lang"] for r in top], [r["kept"] for r in top], label="kept after curation")
    ax.set_title(f"rows per language (top {len(top)} of {len(languages)})")
    ax.tick_params(axis="x", rotation=90)
    ax.legend()


def save_figure(fig: plt.Figure, path: Path) -> None:
    """Write a PNG atomically and free the figure."""
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)


def write_report(run_dir: Path, stats: list[dict]) -> dict:
    stages, languages = stage_table(stats), language_table(stats)
    _plot(stages, languages, run_dir / "report.png")
    markdown = "\n\n".join([
        f"# Curate run `{run_dir.name}`", "## Stages (rows in = kept + dropped + quarantined)", markdown_table(stages),
        "## Languages", markdown_table(languages) or "(no language column)", "![report](report.png)"])
    atomic_write_bytes(run_dir / "report.md", markdown.encode())
    summary = {"run_dir": str(run_dir), "output": str(run_dir / stats[-1]["stage"]), "stages": stages,
               "languages": languages}
    atomic_write_json(run_dir / "summary.json", summary)
    return {**summary, "markdown": markdown}
