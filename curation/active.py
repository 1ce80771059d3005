"""One active-learning round over a curated run directory, resumable step by step.

    <run_dir>/al/round-NNNN/student.pt     the student trained on every label so far
    <run_dir>/al/round-NNNN/metrics.json   labels per language, validation metrics, per-language CV accuracy
    <run_dir>/al/round-NNNN/batch.parquet  the records to label next, with why and the student's suggestion

The pool is the shards of `active_learning.pool_stage` with their embeddings; records whose
`label` is set are the labeled set. A step whose output exists is not redone, so a killed round
reruns without re-training. The next round is the first without a batch.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from curation.config import CurateConfig
from curation.embed import load_vectors, shared_embedder
from curation.evaluation import evaluate
from curation.labels import verified_labels
from curation.report import plt, save_figure
from curation.shards import atomic_write_json, write_parquet
from curation.strategies import Pool, select
from curation.student import EncoderStudent, HeadStudent, cv_accuracy_by_language, load_student

AL_DIR = "al"
BATCH_SCHEMA = pa.schema([("id", pa.string()), ("text", pa.string()), ("lang", pa.string()),
                          ("source", pa.string()), ("cluster", pa.int32()), ("round", pa.int32()),
                          ("strategy", pa.string()), ("score", pa.float32()), ("rank", pa.int32()),
                          ("suggestion", pa.string()), ("suggestion_score", pa.float32()),
                          ("probabilities", pa.map_(pa.string(), pa.float32())),
                          ("vector", pa.list_(pa.float32()))])


@dataclass
class LabeledPool:
    ids: np.ndarray
    texts: list[str]
    langs: np.ndarray
    sources: np.ndarray
    clusters: np.ndarray  # k-means cluster from the coverage stage, -1 without it
    labels: np.ndarray  # object array, None where unlabeled
    vectors: np.ndarray

    @property
    def labeled(self) -> np.ndarray:
        return np.array([label is not None for label in self.labels])


def _counts(values: np.ndarray) -> dict[str, int]:
    return {str(k): int(v) for k, v in zip(*np.unique(values, return_counts=True))} if len(values) else {}


def round_dir(config: CurateConfig, number: int) -> Path:
    return Path(config.run_dir) / AL_DIR / f"round-{number:04d}"


def current_round(config: CurateConfig) -> int:
    number = 0
    while (round_dir(config, number) / "batch.parquet").exists():
        number += 1
    return number


def read_batches(config: CurateConfig, columns: list[str] | None = None) -> pa.Table:
    """Every batch written so far, round after round (only `columns` when given)."""
    paths = sorted((Path(config.run_dir) / AL_DIR).glob("round-*/batch.parquet"))
    schema = pa.schema([BATCH_SCHEMA.field(c) for c in columns]) if columns else BATCH_SCHEMA
    return pa.concat_tables([pq.read_table(p, columns=columns, schema=BATCH_SCHEMA) for p in paths]) if paths \
        else schema.empty_table()


def load_pool(config: CurateConfig) -> LabeledPool:
    """The pool stage's records with their embeddings; a record's label is its source label or, failing
    that, the verified label harvested from annotation."""
    run_dir = Path(config.run_dir)
    stage_dir = run_dir / config.active_learning.pool_stage
    tables, vectors = [], []
    for path in sorted(stage_dir.glob("part-*.parquet")):
        clustered = "cluster" in pq.read_schema(path).names  # coverage ran
        table = pq.read_table(path, columns=["id", "text", "lang", "source", "label"] + ["cluster"] * clustered)
        if not clustered:
            table = table.append_column("cluster", pa.array([-1] * len(table), pa.int32()))
        tables.append(table)
        vectors.append(load_vectors(run_dir, path.stem, table.column("id").to_pylist()))
    table = pa.concat_tables(tables)
    ids = table.column("id").to_pylist()
    verified = verified_labels(run_dir)
    labels = [gold if gold is not None else verified.get(i) for i, gold in zip(ids, table.column("label").to_pylist())]
    return LabeledPool(np.array(ids, dtype=object), table.column("text").to_pylist(),
                       np.array(table.column("lang").to_pylist(), dtype=object),
                       np.array(table.column("source").to_pylist(), dtype=object),
                       np.array(table.column("cluster").fill_null(-1).to_pylist()),
                       np.array(labels, dtype=object),
                       np.concatenate([v for v in vectors if v.size]).astype(np.float32))


def train_round(config: CurateConfig, number: int) -> dict:
    """Train the student on every label so far (skipped when this round's student exists)."""
    folder = round_dir(config, number)
    if (folder / "metrics.json").exists():
        return json.loads((folder / "metrics.json").read_text())
    pool = load_pool(config)
    rows = np.flatnonzero(pool.labeled)
    metrics: dict = {"round": number, "labeled": len(rows),
                     "labels_per_language": _counts(pool.langs[rows])}
    if len(rows):
        classes = sorted(set(pool.labels[rows]))
        y = np.array([classes.index(label) for label in pool.labels[rows]])
        x, langs = pool.vectors[rows], pool.langs[rows]
        cfg = config.active_learning.student.model_copy(update={"seed": config.active_learning.student.seed + number})
        held = np.random.default_rng(cfg.seed).random(len(rows)) < 0.2  # validation: early stop, calibration
        held &= len(rows) >= 50
        if cfg.mode != "head":  # the encoder itself learns: inputs are texts
            x = np.array([pool.texts[i] for i in rows], dtype=object)
            student = EncoderStudent(len(classes), cfg)
        else:
            student = HeadStudent(x.shape[1], len(classes), cfg)
        validation = (_inputs(student, x[held]), y[held], langs[held]) if held.any() else None
        student.fit(_inputs(student, x[~held]), y[~held], langs[~held], validation)
        folder.mkdir(parents=True, exist_ok=True)
        torch.save({"classes": classes, "config": cfg.model_dump(), **student.state()}, folder / "student.pt")
        metrics["training"] = student.history
        if validation is not None:
            predicted = student.predict_proba(validation[0], validation[2]).argmax(axis=1)
            metrics["validation"] = evaluate(validation[1], predicted, validation[2], len(classes))
        if len(rows) >= 30 and cfg.mode == "head":  # five extra fine-tunings a round would cost too much
            cv = cv_accuracy_by_language(x, y, langs, len(classes), cfg)
            metrics["cv_accuracy"] = {lang: list(value) for lang, value in cv.items()}
    atomic_write_json(folder / "metrics.json", metrics)
    return metrics


def _inputs(student: HeadStudent | EncoderStudent, rows: np.ndarray) -> np.ndarray | list[str]:
    return list(rows) if isinstance(student, EncoderStudent) else rows


def _load_student(folder: Path) -> tuple[HeadStudent | EncoderStudent, list[str]]:
    saved = torch.load(folder / "student.pt", weights_only=False)
    return load_student(saved, len(saved["classes"])), saved["classes"]


def round_metrics(config: CurateConfig) -> list[dict]:
    """Every trained round's metrics, round after round."""
    return [json.loads(p.read_text()) for p in sorted((Path(config.run_dir) / AL_DIR).glob("round-*/metrics.json"))]


def metric_history(config: CurateConfig) -> list[dict]:
    """Per round and language: labels so far and the student's held-out accuracy and macro-F1."""
    rows = []
    for metrics in round_metrics(config):
        scores = metrics.get("validation", {}).get("per_language", {})
        rows += [{"round": metrics["round"], "lang": lang, "labels": n,
                  **{k: round(v, 4) for k, v in scores.get(lang, {}).items() if k != "n"}}
                 for lang, n in metrics["labels_per_language"].items()]
    return rows


def plot_history(rows: list[dict], path: Path) -> None:
    """Held-out accuracy per language across rounds (one line each)."""
    fig, ax = plt.subplots(figsize=(9, 5))
    for lang in sorted({r["lang"] for r in rows}):
        points = [(r["round"], r["accuracy"]) for r in rows if r["lang"] == lang and "accuracy" in r]
        if points:
            ax.plot(*zip(*points), marker="o", label=lang)
    ax.set(xlabel="round", ylabel="held-out accuracy", title="student accuracy per language across rounds")
    if ax.lines:
        ax.legend(fontsize="small", ncol=2)
    save_figure(fig, path)


def latest_labeler(config: CurateConfig) -> Callable[[list[str], list[str]], list[str]] | None:
    """(texts, languages) → labels from the newest round's student; None before any student is trained."""
    folders = sorted((Path(config.run_dir) / AL_DIR).glob("round-*/student.pt"))
    if not folders:
        return None
    student, classes = _load_student(folders[-1].parent)

    def label(texts: list[str], langs: list[str]) -> list[str]:
        inputs = texts if isinstance(student, EncoderStudent) else shared_embedder(config.embed).encode(texts)
        probs = student.predict_proba(inputs, np.array(langs, dtype=object))
        return [classes[k] for k in probs.argmax(axis=1)]
    return label


def _history(config: CurateConfig, number: int) -> dict[str, list[tuple[int, float]]]:
    history: dict[str, list[tuple[int, float]]] = {}
    for metrics in round_metrics(config):
        cv = metrics.get("cv_accuracy", {}) if metrics["round"] <= number else {}
        for lang, (known, accuracy) in cv.items():
            history.setdefault(lang, []).append((known, accuracy))
    return history


def select_round(config: CurateConfig, number: int) -> dict:
    """Score the pool with this round's student and write the batch to label (skipped when written)."""
    folder = round_dir(config, number)
    batch_path = folder / "batch.parquet"
    if batch_path.exists():
        return {"round": number, "batch": pq.read_metadata(batch_path).num_rows, "path": str(batch_path)}
    pool = load_pool(config)
    selection = config.active_learning.selection
    # records already sent in earlier batches count as taken (and as covered) until their labels return
    pending = np.isin(pool.ids, read_batches(config, ["id"]).column("id").to_pylist())
    state = Pool(pool.vectors, pool.langs, pool.labeled | pending, _history(config, number))
    probs, mc, classes = None, None, []
    if (folder / "student.pt").exists():
        student, classes = _load_student(folder)
        inputs = pool.texts if isinstance(student, EncoderStudent) else pool.vectors
        probs = student.predict_proba(inputs, pool.langs)
        if selection.strategy == "bald":
            mc = student.mc_dropout_proba(inputs, selection.mc_samples, pool.langs)
    picks = select(state, selection, selection.batch_size, seed=number, probs=probs, mc_probs=mc)
    rows = [{"id": pool.ids[i], "text": pool.texts[i], "lang": p["lang"], "source": pool.sources[i],
             "cluster": int(pool.clusters[i]), "round": number, "strategy": p["strategy"], "score": p["score"],
             "rank": p["rank"], "suggestion": classes[int(probs[i].argmax())] if probs is not None else None,
             "suggestion_score": float(probs[i].max()) if probs is not None else None,
             "probabilities": list(zip(classes, probs[i].tolist())) if probs is not None else None,
             "vector": pool.vectors[i].tolist()} for p in picks for i in [p["index"]]]
    write_parquet(batch_path, pa.Table.from_pylist(rows, BATCH_SCHEMA), max(len(rows), 1))
    return {"round": number, "batch": len(rows), "path": str(batch_path),
            "languages": _counts(np.array([r["lang"] for r in rows], dtype=object))}
