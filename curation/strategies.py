"""Query strategies, per-language budgets and a stopping criterion, as separate swappable pieces.

* `uncertainty`: least confidence, margin (breaking ties), entropy, BALD (MC dropout).
* `select`: random, the uncertainty strategies, k-center greedy (core-set), and `hybrid`:
  k-center distance to the labeled and already-selected records scaled by uncertainty, under
  per-language quotas (or one global budget), never taking two same-language near-duplicates or a record and its
  translation in one batch, with a cold start of diverse cluster representatives (no labels yet).
* `language_quotas`: global (no quotas), proportional, equal, weighted (low-resource, uncertain), or gain (follows the
  measured marginal gain of labels per language, so a language that stopped improving stops
  absorbing budget).
* `StabilizingPredictions`: stop when consecutive students agree (Cohen's kappa) on a stop set.
Every selected record carries why: strategy, score, language, rank.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import faiss
import numpy as np

from curation.config import SelectionConfig

UNCERTAINTY = ("least_confidence", "margin", "entropy", "bald")


@dataclass
class Pool:
    vectors: np.ndarray  # (n, d), L2-normalised
    langs: np.ndarray  # (n,) language codes
    labeled: np.ndarray  # (n,) bool
    history: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # lang -> (labels, accuracy)


def uncertainty(strategy: str, probs: np.ndarray, mc_probs: np.ndarray | None = None) -> np.ndarray:
    """Higher means more uncertain."""
    if strategy == "least_confidence":
        return 1.0 - probs.max(axis=1)
    if strategy == "margin":
        top2 = np.sort(probs, axis=1)[:, -2:]
        return 1.0 - (top2[:, 1] - top2[:, 0])
    if strategy == "entropy":
        return -(probs * np.log(probs + 1e-12)).sum(axis=1)
    if strategy == "bald":
        mean = mc_probs.mean(axis=0)
        expected = -(mc_probs * np.log(mc_probs + 1e-12)).sum(axis=2).mean(axis=0)
        return -(mean * np.log(mean + 1e-12)).sum(axis=1) - expected
    raise ValueError(f"not an uncertainty strategy: {strategy}")


def language_gain(history: list[tuple[int, float]]) -> float | None:
    """Marginal accuracy per 100 labels at the current count, from a learning curve
    accuracy = a + b·ln(labels) fitted to the whole history (None before three rounds: single
    rounds are too noisy to steer a budget)."""
    if len(history) < 3:
        return None
    labels, accuracy = np.array(history, dtype=float).T
    if np.ptp(labels) == 0:
        return None
    slope = np.polyfit(np.log(np.maximum(labels, 1)), accuracy, 1)[0]
    return float(slope * 100 / labels[-1])


def language_quotas(pool: Pool, budget: int, policy: str, scores: np.ndarray | None = None) -> dict[str, int]:
    """Split `budget` over languages (largest remainder), never beyond a language's unlabeled rows."""
    free = ~pool.labeled
    if policy == "global":
        return {"*": min(budget, int(free.sum()))}
    langs, available = np.unique(pool.langs[free], return_counts=True)
    if policy == "equal":
        weights = np.ones(len(langs))
    elif policy == "proportional":
        weights = available.astype(float)
    else:
        labeled = np.array([np.sum(pool.labeled & (pool.langs == lang)) for lang in langs])
        mean_scores = (np.array([scores[free & (pool.langs == lang)].mean() for lang in langs])
                       if scores is not None else np.ones(len(langs)))
        weights = mean_scores / np.sqrt(labeled + 1)  # weighted: low-resource and uncertain languages
        if policy == "gain":
            gains = [language_gain(pool.history.get(lang, [])) for lang in langs]
            if all(g is not None for g in gains):
                # each language's weight follows what its last labels bought; a floor keeps it measured
                weights = np.maximum(np.array(gains), 0.0) + 0.05 * max(max(gains), 1e-3)
    return _allocate(dict(zip(langs, available)), weights, budget)


def _allocate(available: dict[str, int], weights: np.ndarray, budget: int) -> dict[str, int]:
    langs = list(available)
    quotas = dict.fromkeys(langs, 0)
    remaining = min(budget, sum(available.values()))
    weights = np.asarray(weights, dtype=float)
    while remaining > 0:
        open_ = [i for i, lang in enumerate(langs) if quotas[lang] < available[lang]]
        share = weights[open_] / weights[open_].sum() * remaining if weights[open_].sum() > 0 else np.full(
            len(open_), remaining / len(open_))
        floors = np.floor(share).astype(int)
        order = np.argsort(-(share - floors))
        floors[order[: remaining - floors.sum()]] += 1
        for i, extra in zip(open_, floors):
            take = min(extra, available[langs[i]] - quotas[langs[i]])
            quotas[langs[i]] += take
            remaining -= take
    return {lang: q for lang, q in quotas.items() if q}


def kcenter_distance(pool: Pool) -> np.ndarray:
    """1 - cosine to the nearest labeled record (1 everywhere when nothing is labeled)."""
    if not pool.labeled.any():
        return np.ones(len(pool.vectors), dtype=np.float32)
    index = faiss.IndexFlatIP(pool.vectors.shape[1])
    index.add(np.ascontiguousarray(pool.vectors[pool.labeled], dtype=np.float32))
    return 1.0 - index.search(np.ascontiguousarray(pool.vectors, dtype=np.float32), 1)[0][:, 0]


def _rank01(values: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(values, kind="stable"), kind="stable") / max(len(values) - 1, 1)


def typicality(pool: Pool, clusters: int, seed: int) -> np.ndarray:
    """Cosine of each record to its k-means centroid: high for a cluster's representatives."""
    x = np.ascontiguousarray(pool.vectors, dtype=np.float32)
    kmeans = faiss.Kmeans(x.shape[1], min(clusters, len(x)), niter=20, seed=seed, spherical=True, verbose=False)
    kmeans.train(x)
    sims, _ = kmeans.index.search(x, 1)
    return sims[:, 0]


def select(pool: Pool, config: SelectionConfig, budget: int, seed: int, probs: np.ndarray | None = None,
           mc_probs: np.ndarray | None = None) -> list[dict]:
    """Indices of the pool to label next, each with the reason it was chosen."""
    rng = np.random.default_rng(seed)
    free = np.flatnonzero(~pool.labeled)
    budget = min(budget, len(free))
    strategy = config.strategy
    if strategy == "random" or (probs is None and strategy in UNCERTAINTY):
        chosen = rng.choice(free, budget, replace=False)
        picks = [{"index": int(i), "strategy": "random", "score": 0.0, "lang": pool.langs[i]} for i in chosen]
    elif strategy in UNCERTAINTY:
        scores = uncertainty(strategy, probs, mc_probs)
        chosen = free[np.argsort(-scores[free], kind="stable")[:budget]]
        picks = [{"index": int(i), "strategy": strategy, "score": float(scores[i]), "lang": pool.langs[i]}
                 for i in chosen]
    elif strategy == "kcenter":
        picks = _greedy(pool, free, np.zeros(len(pool.vectors)), 0.0, {"*": budget}, config, "kcenter")
    elif not pool.labeled.any() or probs is None:  # cold start: diverse cluster representatives
        policy = config.language_budget if config.language_budget in ("global", "proportional") else "equal"
        quotas = language_quotas(pool, budget, policy)
        picks = _greedy(pool, free, _rank01(typicality(pool, budget, seed)), 0.5, quotas, config, "cold_start")
    else:
        scores = uncertainty("margin", probs)
        quotas = language_quotas(pool, budget, config.language_budget, scores)
        picks = _greedy(pool, free, _rank01(scores), config.uncertainty_weight, quotas, config, "hybrid")
    return [{**p, "rank": rank} for rank, p in enumerate(picks)]


def _greedy(pool: Pool, free: np.ndarray, uncertainty_rank: np.ndarray, uncertainty_weight: float,
            quotas: dict[str, int], config: SelectionConfig, name: str) -> list[dict]:
    """Greedy k-center picks: distance to the labeled-or-picked records, scaled by (1-w) + w·uncertainty
    rank, under quotas, skipping same-language near-duplicates and translations of what is picked.

    The product (not a sum) keeps coverage in charge: an uncertain record next to a labeled one scores
    low, and among records equally far from the labels the uncertain ones win."""
    distance = kcenter_distance(pool)
    allowed = np.zeros(len(pool.vectors), dtype=bool)
    allowed[free] = True
    left = dict(quotas)
    picks = []
    while True:
        candidates = allowed & (np.full(len(allowed), left.get("*", 0) > 0) if "*" in left
                                else np.isin(pool.langs, [lang for lang, q in left.items() if q > 0]))
        if not candidates.any():
            leftover = sum(left.values())
            if "*" in left or not leftover or not allowed.any():
                break
            left = {"*": leftover}  # a language ran out of allowed records: others take its share
            continue
        score = distance / max(distance.max(), 1e-9) * (1 - uncertainty_weight + uncertainty_weight * uncertainty_rank)
        best = int(np.flatnonzero(candidates)[np.argmax(score[candidates])])
        lang = pool.langs[best]
        picks.append({"index": best, "strategy": name, "score": float(score[best]), "lang": lang})
        key = "*" if "*" in left else lang
        left[key] -= 1
        sims = pool.vectors @ pool.vectors[best]
        distance = np.minimum(distance, 1.0 - sims)
        same = pool.langs == lang
        allowed &= ~((same & (sims >= config.duplicate_cosine)) | (~same & (sims >= config.translation_cosine)))
        allowed[best] = False
    return picks


class StabilizingPredictions:
    """Stop when the students of `window` consecutive rounds agree on a fixed stop set (kappa)."""

    def __init__(self, threshold: float = 0.99, window: int = 3):
        self.threshold, self.window = threshold, window
        self.previous: np.ndarray | None = None
        self.kappas: list[float] = []

    def update(self, predictions: np.ndarray) -> bool:
        if self.previous is not None:
            self.kappas.append(_kappa(self.previous, predictions))
        self.previous = predictions
        recent = self.kappas[-self.window:]
        return len(recent) == self.window and min(recent) >= self.threshold


def _kappa(a: np.ndarray, b: np.ndarray) -> float:
    observed = np.mean(a == b)
    classes = np.union1d(a, b)
    expected = sum(np.mean(a == c) * np.mean(b == c) for c in classes)
    return float((observed - expected) / (1 - expected)) if expected < 1 else 1.0
