"""Curated shards for training teams: leak-free splits, a language mixture for train, Parquet files
that `datasets.load_dataset("parquet", ...)` reads, and a data card beside them.

    <export>/data/{split}-NNNNN-of-MMMMM.parquet    id, text, label, lang, source, label_provenance
    <export>/README.md, card.png, export.json        the data card, its pictures, the numbers

Splits are drawn per group, never per row: a record and every translation the semdedup stage
flagged for it form one group (near and exact duplicates were already dropped upstream), so no
sentence reaches validation or test through a translation of it in train. Groups go to splits in
hash order until each split holds its share of rows. Only train is mixed
(temperature or UniMax over languages): validation and test keep their natural shares.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import xxhash
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from curation.config import CurateConfig
from curation.labels import verified_labels
from curation.mixture import draw, plan, report
from curation.shards import atomic_write_json, write_parquet

HUB_FILES = ["data/*.parquet", "README.md", "card.png", "export.json"]  # not the rejected back-translations
EXPORT_SCHEMA = pa.schema([("id", pa.string()), ("text", pa.string()), ("label", pa.string()),
                           ("lang", pa.string()), ("source", pa.string()), ("label_provenance", pa.string())])


def export_dir(config: CurateConfig) -> Path:
    return Path(config.export.output_dir or Path(config.run_dir) / "export")


def labeled_rows(config: CurateConfig) -> tuple[pa.Table, list[list[str]]]:
    """The pool stage's rows with a label (from the source, or verified by annotators), and each row's
    flagged translations."""
    verified = verified_labels(config.run_dir)
    rows, links = [], []
    for path in sorted((Path(config.run_dir) / config.active_learning.pool_stage).glob("part-*.parquet")):
        names = pq.read_schema(path).names
        columns = ["id", "text", "label", "lang", "source"] + ["translations"] * ("translations" in names)
        for row in pq.read_table(path, columns=columns).to_pylist():
            provenance = "source" if row["label"] is not None else "human" if row["id"] in verified else None
            if provenance is None and config.export.only_labeled:
                continue
            label = row["label"] if row["label"] is not None else verified.get(row["id"])
            rows.append({**{k: row[k] for k in ("id", "text", "lang", "source")}, "label": label,
                         "label_provenance": provenance})
            links.append(row.get("translations") or [])
    return pa.Table.from_pylist(rows, EXPORT_SCHEMA), links


def groups(ids: list[str], links: list[list[str]]) -> np.ndarray:
    """Connected components of 'is a flagged translation of' over the exported rows."""
    index = {i: k for k, i in enumerate(ids)}
    edges = [(k, index[t]) for k, targets in enumerate(links) for t in targets if t in index]
    a, b = (np.array(side, dtype=int) for side in zip(*edges)) if edges else (np.array([], int),) * 2
    graph = coo_matrix((np.ones(len(a)), (a, b)), shape=(len(ids), len(ids)))
    return connected_components(graph, directed=False)[1]


def assign_splits(ids: list[str], component: np.ndarray, fractions: dict[str, float]) -> np.ndarray:
    """A split per row, the same for a whole group. Groups are ordered by a hash of their smallest id
    and cut where the running row count crosses each split's share: deterministic, independent of
    input order, and within about one group of the fractions even on a few hundred rows (where a
    per-group hash threshold can leave a split empty)."""
    first: dict[int, str] = {}
    for i, c in zip(ids, component.tolist()):
        first[c] = min(first.get(c, i), i)
    sizes = Counter(component.tolist())
    names, bounds = list(fractions), np.cumsum(list(fractions.values())) / sum(fractions.values())
    split_of, running = {}, 0
    for c in sorted(first, key=lambda c: xxhash.xxh3_64_intdigest(first[c].encode())):
        middle = (running + sizes[c] / 2) / len(ids)
        split_of[c] = names[min(int(np.searchsorted(bounds, middle, side="right")), len(names) - 1)]
        running += sizes[c]
    return np.array([split_of[c] for c in component.tolist()], dtype=object)


def write_split(table: pa.Table, folder: Path, split: str, shard_rows: int) -> list[Path]:
    count = max(1, -(-len(table) // shard_rows))
    for old in folder.glob(f"{split}-*.parquet"):  # a rerun with another shard count leaves no stale file
        old.unlink()
    paths = [folder / f"{split}-{k:05d}-of-{count:05d}.parquet" for k in range(count)]
    for k, path in enumerate(paths):
        write_parquet(path, table.slice(k * shard_rows, shard_rows), max(min(shard_rows, len(table)), 1))
    return paths


def back_translations(train: pa.Table, config: CurateConfig, out: Path) -> tuple[pa.Table, dict]:
    """Guarded back-translations of train rows (never of validation or test rows, so nothing leaks);
    the rejected ones, with their reasons, go to `augment_rejected.parquet`."""
    from curation.active import latest_labeler
    from curation.augment import back_translate, make_translator
    from curation.embed import shared_embedder
    from curation.lid import LanguageIdentifier

    encoder, lid = shared_embedder(config.embed), LanguageIdentifier(config.lid)
    accepted, rejected, stats = back_translate(train, make_translator(config.augment), config.augment, encoder, lid,
                                               latest_labeler(config), near=config.near_dedup)
    write_parquet(out / "augment_rejected.parquet", rejected, max(len(rejected), 1))
    synthetic = accepted.select(["id", "text", "label", "lang", "source"]).append_column(
        "label_provenance", pa.array(["synthetic"] * len(accepted), pa.string()))
    return synthetic.cast(EXPORT_SCHEMA), stats


def export(config: CurateConfig) -> dict:
    """Write the splits and return the numbers the data card shows."""
    table, links = labeled_rows(config)
    ids = table.column("id").to_pylist()
    component = groups(ids, links)
    split = assign_splits(ids, component, config.export.splits)
    out = export_dir(config)
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    summary: dict = {"rows": len(table), "groups": int(component.max() + 1) if len(ids) else 0, "splits": {},
                     "label_provenance": _counts(table.column("label_provenance").to_pylist())}
    for name in config.export.splits:
        part = table.filter(pa.array(split == name))
        mixture_report = None
        if name == "train":
            if config.augment.enabled:
                synthetic, summary["augment"] = back_translations(part, config, out)
                part = pa.concat_tables([part, synthetic])
            part, mixture_report = _mix(part, config)
        paths = write_split(part, data, name, config.export.shard_rows)
        summary["splits"][name] = {"rows": len(part), "files": [str(p.relative_to(out)) for p in paths],
                                   "languages": _counts(part.column("lang").to_pylist()),
                                   "labels": _counts(part.column("label").to_pylist()),
                                   "provenance": _counts(part.column("label_provenance").to_pylist())}
        if mixture_report is not None:
            summary["mixture"] = {"settings": config.mixture.model_dump(), "report": mixture_report}
    summary["leaks"] = _leaks(component, split)
    atomic_write_json(out / "export.json", summary)
    return summary


def push_to_hub(out: Path, repo: str, token: str, private: bool, api=None) -> str:
    """Upload the shards, the card and its numbers as a Hub dataset repo (stale shards of an earlier
    push are deleted); returns the commit URL. `api`: a `huggingface_hub.HfApi` (default: one with `token`)."""
    from huggingface_hub import HfApi

    api = api or HfApi(token=token)
    api.create_repo(repo, repo_type="dataset", private=private, exist_ok=True)
    rows = json.loads((out / "export.json").read_text())["rows"]
    commit = api.upload_folder(folder_path=str(out), repo_id=repo, repo_type="dataset", allow_patterns=HUB_FILES,
                               delete_patterns=["data/*.parquet"], commit_message=f"Curated export, {rows} rows")
    return str(commit)


def _mix(part: pa.Table, config: CurateConfig) -> tuple[pa.Table, list[dict]]:
    langs = np.array(part.column("lang").to_pylist(), dtype=object)
    labels = np.array(part.column("label").to_pylist(), dtype=object)
    counts = {lang: int(n) for lang, n in zip(*np.unique(langs, return_counts=True))} if len(langs) else {}
    picked = draw(langs, labels, plan(counts, config.mixture), config.mixture)
    return part.take(pa.array(picked, pa.int64())), report(counts, config.mixture, langs[picked])


def _leaks(component: np.ndarray, split: np.ndarray) -> int:
    """Groups found in more than one split (0 by construction; the card states it)."""
    spans: dict[int, set] = {}
    for c, s in zip(component.tolist(), split.tolist()):
        spans.setdefault(c, set()).add(s)
    return sum(len(s) > 1 for s in spans.values())


def _counts(values: list) -> dict[str, int]:
    return dict(sorted(Counter(str(value) for value in values).items()))

