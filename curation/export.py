"""Curated shards for training teams: leak-free splits, a language mixture for train, Parquet files
that `datasets.load_dataset("parquet", ...)` reads, and a data card beside them.

    <export>/data/{split}-NNNNN-of-MMMMM.parquet    id, text, label, lang, source, label_provenance
    <export>/README.md, card.png, export.json        the data card, its pictures, the numbers

Splits are drawn per group, never per row: a record and every translation the semdedup stage
flagged for it form one group (near and exact duplicates were already dropped upstream), so no
sentence reaches validation or test through a translation of it in train. Groups go to splits in
hash order until each split holds its share of rows. Only train is mixed (temperature or UniMax
over languages): validation and test keep their natural shares. The export streams (see `export`).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import xxhash
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from curation.card import write_card
from curation.config import CurateConfig
from curation.labels import verified_labels
from curation.mixture import draw, plan, report
from curation.shards import atomic_write_json, write_parquet

HUB_FILES = ["data/*.parquet", "README.md", "card.png", "export.json"]  # not the rejected back-translations
EXPORT_SCHEMA = pa.schema([("id", pa.string()), ("text", pa.string()), ("label", pa.string()),
                           ("lang", pa.string()), ("source", pa.string()), ("label_provenance", pa.string())])
PLAN_SCHEMA = pa.schema([("id", pa.string()), ("label", pa.string()), ("lang", pa.string()),
                         ("label_provenance", pa.string())])


def export_dir(config: CurateConfig) -> Path:
    return Path(config.export.output_dir or Path(config.run_dir) / "export")


def pool_rows(config: CurateConfig, text: bool) -> Iterator[tuple[pa.Table, list[list[str]]]]:
    """The pool stage's exported rows, shard by shard: a label from the source or verified by
    annotators (unlabeled rows only without `only_labeled`), its provenance, and its flagged
    translations. Without `text`, the small columns the splits and the mixture are planned from."""
    verified = verified_labels(config.run_dir)
    for path in sorted((Path(config.run_dir) / config.active_learning.pool_stage).glob("part-*.parquet")):
        names = pq.read_schema(path).names
        columns = ["id", "label", "lang"] + ["text", "source"] * text + ["translations"] * ("translations" in names)
        rows = []
        for row in pq.read_table(path, columns=columns).to_pylist():
            provenance = "source" if row["label"] is not None else "human" if row["id"] in verified else None
            if provenance is None and config.export.only_labeled:
                continue
            rows.append({**row, "label": row["label"] if row["label"] is not None else verified.get(row["id"]),
                         "label_provenance": provenance})
        schema = EXPORT_SCHEMA if text else PLAN_SCHEMA
        yield pa.Table.from_pylist(rows, schema), [row.get("translations") or [] for row in rows]


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


class SplitWriter:
    """One split's rows into `{split}-NNNNN-of-MMMMM.parquet` files of `shard_rows` rows, each file's
    rows shuffled under `seed` (so a row drawn several times is spread out); holds one file's rows."""

    def __init__(self, folder: Path, split: str, total: int, shard_rows: int, seed: int):
        self.folder, self.split, self.shard_rows = folder, split, shard_rows
        self.count = max(1, -(-total // shard_rows))
        for old in folder.glob(f"{split}-*.parquet"):  # a rerun with another shard count leaves no stale file
            old.unlink()
        self.buffer: list[pa.Table] = []
        self.buffered = 0
        self.paths: list[Path] = []
        self.rng = np.random.default_rng([seed, *split.encode()])
        self.seen = {column: Counter() for column in ("lang", "label", "label_provenance")}

    def add(self, table: pa.Table) -> None:
        self.buffer.append(table)
        self.buffered += len(table)
        for column, counter in self.seen.items():
            counter.update(str(value) for value in table.column(column).to_pylist())
        while self.buffered >= self.shard_rows:
            self._flush(self.shard_rows)

    def close(self) -> list[Path]:
        while self.buffered or len(self.paths) < self.count:  # an empty split still gets its one file
            self._flush(min(self.buffered, self.shard_rows))
        return self.paths

    def counts(self) -> dict:
        """Rows written, and per language, label and label provenance."""
        return {"rows": sum(self.seen["lang"].values()), "languages": dict(sorted(self.seen["lang"].items())),
                "labels": dict(sorted(self.seen["label"].items())),
                "provenance": dict(sorted(self.seen["label_provenance"].items()))}

    def _flush(self, rows: int) -> None:
        table = pa.concat_tables(self.buffer) if self.buffer else EXPORT_SCHEMA.empty_table()
        self.buffer, self.buffered = [table.slice(rows)], self.buffered - rows
        path = self.folder / f"{self.split}-{len(self.paths):05d}-of-{self.count:05d}.parquet"
        write_parquet(path, table.slice(0, rows).take(self.rng.permutation(rows)), max(rows, 1))
        self.paths.append(path)


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
    """Write the splits and their data card; return the numbers the card shows, and its path.

    Streams: a first pass reads the small columns (id, language, label, links) to draw the groups,
    splits and the train mixture; a second pass writes each pool shard's rows to their split, a
    train row as many times as the mixture drew it. Memory holds those small columns and one output
    file's rows, never the texts of the corpus (back-translation holds its candidates: the train
    rows of the pivot languages)."""
    plan_parts = list(pool_rows(config, text=False))
    meta = pa.concat_tables([table for table, _ in plan_parts]) if plan_parts else PLAN_SCHEMA.empty_table()
    ids = meta.column("id").to_pylist()
    component = groups(ids, [links for _, part in plan_parts for links in part])
    split = assign_splits(ids, component, config.export.splits)
    out = export_dir(config)
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    summary: dict = {"rows": len(ids), "groups": int(component.max() + 1) if len(ids) else 0, "splits": {},
                     "label_provenance": _counts(meta.column("label_provenance").to_pylist())}
    copies = {name: (split == name).astype(int) for name in config.export.splits}  # times each row is written
    synthetic, synthetic_copies = EXPORT_SCHEMA.empty_table(), np.zeros(0, dtype=int)
    if "train" in copies:
        if config.augment.enabled:
            in_pivot = np.isin(meta.column("lang").to_numpy(zero_copy_only=False), list(config.augment.pivots))
            synthetic, summary["augment"] = back_translations(
                _gather(config, np.flatnonzero((split == "train") & in_pivot)), config, out)
        copies["train"], synthetic_copies, mixture = _mix(meta, split == "train", synthetic, config)
        summary["mixture"] = {"settings": config.mixture.model_dump(), "report": mixture}
    writers = {name: SplitWriter(data, name, int(n.sum()) + int(synthetic_copies.sum()) * (name == "train"),
                                 config.export.shard_rows, config.mixture.seed) for name, n in copies.items()}
    start = 0
    for table, _ in pool_rows(config, text=True):
        for name, writer in writers.items():
            writer.add(_repeat(table, copies[name][start:start + len(table)]))
        start += len(table)
    if "train" in writers:
        writers["train"].add(_repeat(synthetic, synthetic_copies))
    for name, writer in writers.items():
        summary["splits"][name] = {"files": [str(p.relative_to(out)) for p in writer.close()], **writer.counts()}
    summary["leaks"] = _leaks(component, split)
    atomic_write_json(out / "export.json", summary)
    summary["card"] = str(write_card(config, summary, out))
    return summary


def _repeat(table: pa.Table, times: np.ndarray) -> pa.Table:
    return table.take(np.repeat(np.arange(len(table)), times))


def _gather(config: CurateConfig, rows: np.ndarray) -> pa.Table:
    """The exported rows at these positions, with their text (one more pass over the pool)."""
    wanted, start, parts = np.sort(rows), 0, []
    for table, _ in pool_rows(config, text=True):
        inside = wanted[(wanted >= start) & (wanted < start + len(table))] - start
        parts.append(table.take(inside))
        start += len(table)
    return pa.concat_tables(parts) if parts else EXPORT_SCHEMA.empty_table()


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


def _mix(meta: pa.Table, train: np.ndarray, synthetic: pa.Table,
         config: CurateConfig) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """How many times the mixture draws each train row and each synthetic row, and its report."""
    positions = np.flatnonzero(train)
    langs = np.concatenate([meta.column("lang").to_numpy(zero_copy_only=False)[positions],
                            synthetic.column("lang").to_numpy(zero_copy_only=False)]).astype(object)
    labels = np.concatenate([meta.column("label").to_numpy(zero_copy_only=False)[positions],
                             synthetic.column("label").to_numpy(zero_copy_only=False)]).astype(object)
    counts = {lang: int(n) for lang, n in zip(*np.unique(langs, return_counts=True))} if len(langs) else {}
    picked = draw(langs, labels, plan(counts, config.mixture), config.mixture)
    drawn = np.bincount(picked, minlength=len(langs))
    copies = np.zeros(len(meta), dtype=int)
    copies[positions] = drawn[:len(positions)]
    return copies, drawn[len(positions):], report(counts, config.mixture, langs[picked])


def _leaks(component: np.ndarray, split: np.ndarray) -> int:
    """Groups found in more than one split (0 by construction; the card states it)."""
    spans: dict[int, set] = {}
    for c, s in zip(component.tolist(), split.tolist()):
        spans.setdefault(c, set()).add(s)
    return sum(len(s) > 1 for s in spans.values())


def _counts(values: list) -> dict[str, int]:
    return dict(sorted(Counter(str(value) for value in values).items()))

