"""Per-language evaluation: every report names each language, the worst one and the gap."""

from __future__ import annotations

import numpy as np


def macro_f1(gold: np.ndarray, predicted: np.ndarray, classes: int) -> float:
    scores = []
    for c in range(classes):
        tp = np.sum((predicted == c) & (gold == c))
        support, claimed = np.sum(gold == c), np.sum(predicted == c)
        if support == 0:
            continue
        scores.append(2 * tp / (support + claimed) if support + claimed else 0.0)
    return float(np.mean(scores)) if scores else 0.0


def language_f1(gold: np.ndarray, predicted: np.ndarray, langs: np.ndarray, classes: int) -> dict[str, float]:
    """Macro-F1 of each language (what the students' early stopping and rollback rule compare)."""
    return {lang: macro_f1(gold[langs == lang], predicted[langs == lang], classes) for lang in np.unique(langs)}


def evaluate(gold: np.ndarray, predicted: np.ndarray, langs: np.ndarray, classes: int) -> dict:
    """Accuracy and macro-F1 overall and per language, with the worst language and the max-min gap."""
    per_language = {}
    for lang in sorted(set(langs.tolist())):
        mask = langs == lang
        per_language[lang] = {"n": int(mask.sum()), "accuracy": float(np.mean(gold[mask] == predicted[mask])),
                              "macro_f1": macro_f1(gold[mask], predicted[mask], classes)}
    accuracies = {lang: v["accuracy"] for lang, v in per_language.items()}
    worst = min(accuracies, key=accuracies.get)
    return {"accuracy": float(np.mean(gold == predicted)), "macro_f1": macro_f1(gold, predicted, classes),
            "worst_language": worst, "worst_accuracy": accuracies[worst],
            "gap": max(accuracies.values()) - accuracies[worst], "per_language": per_language}
