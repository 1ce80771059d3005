"""Training mixtures over languages: temperature sampling or UniMax, with floors, caps and an epoch cap.

`plan` turns per-language row counts into rows to draw per language; `draw` picks them
(deterministic under the seed: whole epochs first, then a sample without replacement of the
rest, so no row repeats more than `ceil(max_epochs)` times); `report` compares target and achieved.

* temperature: p_l ∝ n_l^(1/T) (T = 1: natural shares; larger T flattens towards uniform).
* UniMax (Chung et al., 2023): the budget is spread uniformly, no language beyond `max_epochs`
  passes over its rows, the excess going to the others.
Floors and caps are shares of the mixture; the epoch cap wins over a floor (no row is repeated
more often than allowed), and a share the caps free goes to the other languages.
"""

from __future__ import annotations

import numpy as np

from curation.config import MixtureConfig


def target_shares(counts: dict[str, int], config: MixtureConfig) -> dict[str, float]:
    """Each language's share of the mixture before rounding to rows."""
    langs = sorted(lang for lang, n in counts.items() if n > 0)
    n = np.array([counts[lang] for lang in langs], dtype=float)
    total = config.total_rows or int(n.sum())
    desired = np.ones(len(n)) if config.method == "unimax" else n ** (1.0 / config.temperature)
    epoch_cap = np.floor(config.max_epochs * n) / total  # whole rows, so rounding never breaks it
    upper = np.minimum(epoch_cap, [config.caps.get(lang, 1.0) for lang in langs])
    lower = np.minimum([config.floors.get(lang, 0.0) for lang in langs], upper)
    return dict(zip(langs, _water_fill(desired / desired.sum(), lower, upper).tolist()))


def _water_fill(desired: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Shares proportional to `desired`, within [lower, upper], summing to 1 where the bounds allow."""
    share, fixed = np.zeros(len(desired)), np.zeros(len(desired), dtype=bool)
    for _ in range(len(desired) + 1):
        free = ~fixed
        left = 1.0 - share[fixed].sum()
        share[free] = desired[free] / desired[free].sum() * left if desired[free].sum() > 0 else 0.0
        over, under = free & (share > upper + 1e-12), free & (share < lower - 1e-12)
        if not over.any() and not under.any():
            break
        share[over], share[under] = upper[over], lower[under]
        fixed |= over | under
    return share


def plan(counts: dict[str, int], config: MixtureConfig) -> dict[str, int]:
    """Rows to draw per language (largest remainder), never more than `max_epochs` × its rows."""
    shares = target_shares(counts, config)
    total = config.total_rows or sum(counts.values())
    raw = {lang: share * total for lang, share in shares.items()}
    rows = {lang: int(value) for lang, value in raw.items()}
    short = round(sum(raw.values())) - sum(rows.values())
    for lang in sorted(raw, key=lambda k: raw[k] - int(raw[k]), reverse=True)[:short]:
        rows[lang] += 1  # its share is below its whole-row epoch cap, so one more row still fits
    return rows


def draw(langs: np.ndarray, labels: np.ndarray, rows: dict[str, int], config: MixtureConfig) -> np.ndarray:
    """Indices into the table (with repeats for upsampled languages), language by language."""
    picked = []
    for lang, wanted in sorted(rows.items()):
        rng = np.random.default_rng([config.seed, *lang.encode()])
        members = np.flatnonzero(langs == lang)
        if config.balance_labels:
            groups = [members[labels[members] == label] for label in sorted(set(labels[members].tolist()))]
            per_label = _even_split(wanted, [len(g) for g in groups], config.max_epochs)
            picked += [_epochs(g, k, rng) for g, k in zip(groups, per_label)]
        else:
            picked.append(_epochs(members, wanted, rng))
    return np.concatenate(picked) if picked else np.array([], dtype=int)


def _epochs(members: np.ndarray, wanted: int, rng: np.random.Generator) -> np.ndarray:
    """Whole passes over `members`, then a sample without replacement for the rest."""
    full, rest = divmod(wanted, len(members)) if len(members) else (0, 0)
    return np.concatenate([np.tile(members, full), rng.choice(members, rest, replace=False)]).astype(int)


def _even_split(total: int, sizes: list[int], max_epochs: float) -> list[int]:
    """`total` over groups as evenly as their epoch caps allow."""
    caps = [int(max_epochs * size) for size in sizes]
    split, left = [0] * len(sizes), min(total, sum(caps))
    while left > 0:
        open_ = [i for i in range(len(sizes)) if split[i] < caps[i]]
        for i in open_[:left] if left < len(open_) else open_:
            split[i] += 1
            left -= 1
    return split


def report(counts: dict[str, int], config: MixtureConfig, langs_drawn: np.ndarray) -> list[dict]:
    """Per language: rows available, target share, achieved share, rows drawn and epochs."""
    shares = target_shares(counts, config)
    drawn = {lang: int(np.sum(langs_drawn == lang)) for lang in counts}
    total = max(sum(drawn.values()), 1)
    return [{"lang": lang, "available": counts[lang], "natural_share": counts[lang] / sum(counts.values()),
             "target_share": shares.get(lang, 0.0), "achieved_share": drawn[lang] / total, "rows": drawn[lang],
             "epochs": drawn[lang] / counts[lang] if counts[lang] else 0.0} for lang in sorted(counts)]
