"""Active-learning simulation: an oracle reveals gold labels of a labeled pool, round after round.

Every strategy (ours and small-text's) runs on the same pool, evaluation split, seeds, budgets
and student (the `head` student on cached embeddings); only the choice of records differs.
The evaluation split never shares a sentence with the pool (SIB-200: disjoint `index_id`s).
Learning curves record accuracy, macro-F1, worst-language accuracy and the gap per round.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from curation.config import EmbedConfig, SelectionConfig, StudentConfig
from curation.encoder import curation_home
from curation.evaluation import evaluate
from curation.lid_eval import read_sib_split
from curation.strategies import Pool, StabilizingPredictions, select
from curation.student import HeadStudent, cv_accuracy_by_language, train_head

SMALL_TEXT = ("st_least_confidence", "st_breaking_ties", "st_entropy", "st_greedy_coreset", "st_embedding_kmeans")


@dataclass
class Task:
    name: str
    classes: list[str]
    pool_x: np.ndarray
    pool_y: np.ndarray
    pool_langs: np.ndarray
    eval_x: np.ndarray
    eval_y: np.ndarray
    eval_langs: np.ndarray


def embed_cached(texts: list[str], model: str = "e5-small") -> np.ndarray:
    """Embeddings of `texts`, cached on disk by model and content."""
    key = hashlib.sha256(json.dumps([model, texts], ensure_ascii=False).encode()).hexdigest()[:24]
    path = curation_home() / "cache" / "embeddings" / f"{key}.npy"
    if path.exists():
        return np.load(path)
    from curation.embed import shared_embedder

    config = EmbedConfig(enabled=True, model=model, prompt_name="passage" if model == "e5-small" else None)
    vectors = shared_embedder(config).encode(texts).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


def load_sib(sib_dir: Path, varieties: list[str], model: str = "e5-small", per_variety: int | None = None) -> Task:
    pool = [(v, r) for v in varieties for r in read_sib_split(sib_dir / v, "train")[:per_variety]]
    held = [(v, r) for v in varieties for r in read_sib_split(sib_dir / v, "dev")]
    shared = {r["index_id"] for _, r in pool} & {r["index_id"] for _, r in held}
    if shared:
        raise ValueError(f"pool and evaluation share {len(shared)} sentences")
    classes = sorted({r["category"] for _, r in pool})
    return _task("sib200", classes, [(v, r["text"], r["category"]) for v, r in pool],
                 [(v, r["text"], r["category"]) for v, r in held], model)


def load_xlmt(xlmt_dir: Path, languages: list[str], model: str = "e5-small") -> Task:
    def rows(split: str) -> list[tuple[str, str, str]]:
        out = []
        for language in languages:
            texts = (xlmt_dir / language / f"{split}_text.txt").read_text(encoding="utf-8").splitlines()
            labels = (xlmt_dir / language / f"{split}_labels.txt").read_text().splitlines()
            out += [(language, t, label) for t, label in zip(texts, labels)]
        return out

    return _task("xlmt", ["0", "1", "2"], rows("train"), rows("val"), model)


def _task(name: str, classes: list[str], pool: list[tuple], held: list[tuple], model: str) -> Task:
    """(language, text, label) rows of the pool and the evaluation split, embedded with `model`."""
    index = {c: i for i, c in enumerate(classes)}
    return Task(name, classes,
                embed_cached([t for _, t, _ in pool], model), np.array([index[y] for *_, y in pool]),
                np.array([v for v, *_ in pool], dtype=object),
                embed_cached([t for _, t, _ in held], model), np.array([index[y] for *_, y in held]),
                np.array([v for v, *_ in held], dtype=object))


def _train(task: Task, labeled: np.ndarray, config: StudentConfig, seed: int) -> HeadStudent:
    """A fresh student on all labeled rows, for a fixed number of epochs: with a few hundred labels,
    a validation split would be too small per language to stop on (or to calibrate)."""
    rows = np.flatnonzero(labeled)
    return train_head(task.pool_x[rows], task.pool_y[rows], task.pool_langs[rows], len(task.classes),
                      config.model_copy(update={"seed": seed}))


class _SmallTextClassifier:
    """What small-text's strategies call, answered by our student."""

    def __init__(self, student: HeadStudent):
        self.student = student

    def predict_proba(self, dataset):
        return self.student.predict_proba(dataset.x)

    def embed(self, dataset, return_proba=False, **_):
        return (dataset.x, self.predict_proba(dataset)) if return_proba else dataset.x


def _small_text_query(name: str, student: HeadStudent, task: Task, labeled: np.ndarray, budget: int) -> np.ndarray:
    import small_text

    strategies = {"st_least_confidence": small_text.LeastConfidence, "st_breaking_ties": small_text.BreakingTies,
                  "st_entropy": small_text.PredictionEntropy, "st_greedy_coreset": small_text.GreedyCoreset,
                  "st_embedding_kmeans": small_text.EmbeddingKMeans}
    dataset = small_text.SklearnDataset(task.pool_x, task.pool_y)
    query = strategies[name]()
    kwargs = {"pbar": None} if name in ("st_greedy_coreset", "st_embedding_kmeans") else {}
    return query.query(_SmallTextClassifier(student), dataset, np.flatnonzero(~labeled), np.flatnonzero(labeled),
                       task.pool_y[labeled], n=budget, **kwargs)


def run(task: Task, strategy: str, seed: int, rounds: int, batch: int, student: StudentConfig,
        selection: SelectionConfig) -> dict:
    """One learning curve: `rounds` batches of `batch` labels, starting from no labels."""
    pool = Pool(task.pool_x, task.pool_langs, np.zeros(len(task.pool_x), dtype=bool))
    ours = strategy not in SMALL_TEXT
    config = selection.model_copy(update={"strategy": strategy if ours else "random", "batch_size": batch})
    rng = np.random.default_rng(seed)
    stop_set = rng.choice(len(task.eval_x), min(500, len(task.eval_x)), replace=False)
    stopper, curve, model = StabilizingPredictions(), [], None
    for round_number in range(rounds):
        if model is None:
            picks = [p["index"] for p in select(pool, config, batch, seed)]
        elif ours:
            mc = model.mc_dropout_proba(task.pool_x, selection.mc_samples) if strategy == "bald" else None
            picks = [p["index"] for p in select(pool, config, batch, seed + round_number,
                                                model.predict_proba(task.pool_x), mc)]
        else:
            picks = list(_small_text_query(strategy, model, task, pool.labeled, batch))
        picks = np.array(picks, dtype=int)
        pool.labeled[picks] = True
        model = _train(task, pool.labeled, student, seed)
        if strategy == "hybrid" and selection.language_budget == "gain":
            rows = np.flatnonzero(pool.labeled)
            for lang, (known, accuracy) in cv_accuracy_by_language(
                    task.pool_x[rows], task.pool_y[rows], task.pool_langs[rows], len(task.classes),
                    student.model_copy(update={"seed": seed})).items():
                pool.history.setdefault(lang, []).append((known, accuracy))
        predicted = model.predict_proba(task.eval_x).argmax(axis=1)
        result = evaluate(task.eval_y, predicted, task.eval_langs, len(task.classes))
        langs, counts = np.unique(task.pool_langs[picks], return_counts=True)
        curve.append({"labels": int(pool.labeled.sum()), **{k: result[k] for k in (
            "accuracy", "macro_f1", "worst_language", "worst_accuracy", "gap")},
            "batch_languages": dict(zip(langs.tolist(), counts.tolist())),
            "stop": stopper.update(predicted[stop_set])})
    return {"strategy": strategy, "seed": seed, "curve": curve}


def full_pool_reference(task: Task, student: StudentConfig, seed: int) -> dict:
    model = _train(task, np.ones(len(task.pool_x), dtype=bool), student, seed)
    result = evaluate(task.eval_y, model.predict_proba(task.eval_x).argmax(axis=1), task.eval_langs,
                      len(task.classes))
    return {k: result[k] for k in ("accuracy", "macro_f1", "worst_accuracy", "gap")}


def simulate(task: Task, strategies: list[str], seeds: list[int], rounds: int, batch: int,
             student: StudentConfig | None = None, selection: SelectionConfig | None = None) -> dict:
    student, selection = student or StudentConfig(), selection or SelectionConfig()
    runs = [run(task, s, seed, rounds, batch, student, selection)
            for s in tqdm(strategies, desc="strategies") for seed in seeds]
    return {"task": task.name, "pool": len(task.pool_x), "eval": len(task.eval_x), "rounds": rounds,
            "batch": batch, "seeds": seeds, "full_pool": full_pool_reference(task, student, seeds[0]),
            "runs": runs, "summary": summarise(runs)}


def summarise(runs: list[dict]) -> dict:
    """Per strategy: mean and std over seeds of the area under the accuracy curve, of accuracy at
    each budget, and of worst-language accuracy at each budget."""
    out = {}
    for strategy in dict.fromkeys(r["strategy"] for r in runs):
        curves = [r["curve"] for r in runs if r["strategy"] == strategy]
        accuracy = np.array([[p["accuracy"] for p in c] for c in curves])
        worst = np.array([[p["worst_accuracy"] for p in c] for c in curves])
        f1 = np.array([[p["macro_f1"] for p in c] for c in curves])
        gap = np.array([[p["gap"] for p in c] for c in curves])
        out[strategy] = {"labels": [p["labels"] for p in curves[0]],
                         "aulc_mean": float(accuracy.mean()), "aulc_std": float(accuracy.mean(axis=1).std()),
                         "accuracy_mean": accuracy.mean(axis=0).round(4).tolist(),
                         "accuracy_std": accuracy.std(axis=0).round(4).tolist(),
                         "macro_f1_mean": f1.mean(axis=0).round(4).tolist(),
                         "worst_accuracy_mean": worst.mean(axis=0).round(4).tolist(),
                         "worst_accuracy_std": worst.std(axis=0).round(4).tolist(),
                         "gap_mean": gap.mean(axis=0).round(4).tolist()}
    return out


def write_report(result: dict, out_dir: Path) -> Path:
    """simulation.json, a Markdown table and a PNG of the learning curves; returns the Markdown path."""
    import matplotlib.pyplot as plt

    from curation.report import markdown_table, save_figure

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "simulation.json").write_text(json.dumps(result, indent=2, default=str))
    summary, full = result["summary"], result["full_pool"]
    fig, axes = plt.subplots(1, 3, figsize=(17, 5))
    for number, (strategy, s) in enumerate(summary.items()):
        style, color = "--" if strategy.startswith("st_") else "-", plt.cm.tab20(number % 20)
        for ax, key in zip(axes, ("accuracy_mean", "macro_f1_mean", "worst_accuracy_mean")):
            ax.plot(s["labels"], s[key], style, color=color, marker="o", ms=3, label=strategy)
        axes[0].fill_between(s["labels"], np.subtract(s["accuracy_mean"], s["accuracy_std"]),
                             np.add(s["accuracy_mean"], s["accuracy_std"]), color=color, alpha=0.1)
    for ax, title, key in zip(axes, ("accuracy", "macro-F1", "worst-language accuracy"),
                              ("accuracy", "macro_f1", "worst_accuracy")):
        ax.axhline(full[key], color="black", lw=0.8, ls=":", label="whole pool labeled")
        ax.set_title(f"{result['task']}: {title}")
        ax.set_xlabel("labels")
    axes[0].legend(fontsize=7)
    save_figure(fig, out_dir / "learning_curves.png")
    budgets = summary[next(iter(summary))]["labels"]
    rows = [{"strategy": name, "AULC": f"{s['aulc_mean']:.4f} ± {s['aulc_std']:.4f}",
             f"acc@{budgets[0]}": s["accuracy_mean"][0], f"acc@{budgets[len(budgets) // 2]}":
             s["accuracy_mean"][len(budgets) // 2], f"acc@{budgets[-1]}": s["accuracy_mean"][-1],
             f"worst@{budgets[-1]}": s["worst_accuracy_mean"][-1], f"gap@{budgets[-1]}": s["gap_mean"][-1]}
            for name, s in sorted(summary.items(), key=lambda kv: -kv[1]["aulc_mean"])]
    markdown = (f"# Active-learning simulation: {result['task']}\n\nPool {result['pool']}, evaluation "
                f"{result['eval']}, {result['rounds']} rounds of {result['batch']} labels, seeds {result['seeds']}. "
                f"Whole pool labeled: accuracy {full['accuracy']:.4f}, worst language {full['worst_accuracy']:.4f}, "
                f"gap {full['gap']:.4f}. Mean ± std over seeds; `st_` = small-text's strategy on the same "
                f"student.\n\n{markdown_table(rows)}\n\n![curves](learning_curves.png)\n")
    (out_dir / "simulation.md").write_text(markdown)
    return out_dir / "simulation.md"
