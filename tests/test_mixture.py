"""Mixture samplers: property tests (hypothesis) and a real SIB-200 + XLM-T language mix."""

from __future__ import annotations

import math

import numpy as np
from conftest import sib_rows, xlmt_rows
from hypothesis import example, given, settings
from hypothesis import strategies as st

from curation.config import MixtureConfig
from curation.mixture import draw, plan, report, target_shares

COUNTS = st.dictionaries(st.sampled_from([f"l{i}" for i in range(12)]), st.integers(1, 3000), min_size=1, max_size=12)
CONFIGS = st.builds(MixtureConfig, method=st.sampled_from(["temperature", "unimax"]),
                    temperature=st.floats(1, 10), max_epochs=st.floats(1, 8), seed=st.integers(0, 10))


def _table(counts: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    langs = np.array([lang for lang, n in sorted(counts.items()) for _ in range(n)], dtype=object)
    return langs, np.arange(len(langs)) % 3


@settings(max_examples=150, deadline=None)
@given(COUNTS, CONFIGS)
def test_shares_and_rows_respect_the_epoch_cap_and_add_up(counts, config):
    shares = target_shares(counts, config)
    assert math.isclose(sum(shares.values()), 1.0, abs_tol=1e-9)
    rows = plan(counts, config)
    assert sum(rows.values()) == sum(counts.values())  # the default budget: the rows available
    assert all(rows[lang] <= config.max_epochs * counts[lang] for lang in counts)


@settings(max_examples=80, deadline=None)
@given(COUNTS, CONFIGS)
def test_draws_hit_the_plan_never_repeat_beyond_the_cap_and_are_reproducible(counts, config):
    langs, labels = _table(counts)
    rows = plan(counts, config)
    picked = draw(langs, labels, rows, config)
    assert np.array_equal(picked, draw(langs, labels, rows, config))  # same seed, same mixture
    assert np.bincount(picked, minlength=len(langs)).max() <= math.ceil(config.max_epochs)
    achieved = {r["lang"]: r for r in report(counts, config, langs[picked])}
    for lang, wanted in rows.items():
        assert achieved[lang]["rows"] == wanted
        assert abs(achieved[lang]["achieved_share"] - achieved[lang]["target_share"]) <= 1.5 / len(picked) + 1e-9


@settings(max_examples=80, deadline=None)
@given(COUNTS, st.floats(0.0, 0.3), st.floats(0.3, 1.0))
@example({"l0": 1, "l1": 1, "l2": 1, "l3": 998, "l4": 3000}, 0.25, 1.0)  # 1 row × 1000 epochs < 25% of 4001
def test_floors_and_caps_hold_where_the_epoch_cap_allows(counts, floor, cap):
    first, last = min(counts), max(counts)
    config = MixtureConfig(floors={first: floor}, caps={last: cap}, max_epochs=1000)
    shares = target_shares(counts, config)
    if len(counts) > 1:
        assert shares[last] <= cap + 1e-9
    most_by_epochs = math.floor(config.max_epochs * counts[first]) / sum(counts.values())
    assert shares[first] >= min(floor, most_by_epochs) - 1e-9 or len(counts) == 1
    assert shares[first] <= most_by_epochs + 1e-9


def test_temperature_one_keeps_natural_shares_and_larger_flattens():
    counts = {"eng": 9000, "yor": 100}
    natural = target_shares(counts, MixtureConfig(temperature=1, max_epochs=100))
    assert math.isclose(natural["yor"], 100 / 9100)
    flat = target_shares(counts, MixtureConfig(temperature=5, max_epochs=100))
    assert flat["yor"] > 5 * natural["yor"]
    unimax = target_shares(counts, MixtureConfig(method="unimax", max_epochs=4))
    assert math.isclose(unimax["yor"], 400 / 9100)  # uniform is 0.5: the epoch cap stops it at 4 passes


def test_real_language_mix_balances_labels_within_a_language():
    varieties = {"eng_Latn": 200, "fra_Latn": 120, "yor_Latn": 30}
    rows = [(v, r["category"]) for v, n in varieties.items() for r in sib_rows(v, "train", n)]
    rows += [("hin_tweets", r["label"]) for r in xlmt_rows("hindi", 50)]
    langs = np.array([lang for lang, _ in rows], dtype=object)
    labels = np.array([label for _, label in rows], dtype=object)
    counts = {lang: int(np.sum(langs == lang)) for lang in set(langs.tolist())}
    config = MixtureConfig(temperature=3, max_epochs=3, balance_labels=True, seed=7)
    picked = draw(langs, labels, plan(counts, config), config)
    table = {r["lang"]: r for r in report(counts, config, langs[picked])}
    assert table["yor_Latn"]["epochs"] > 1 and table["eng_Latn"]["epochs"] < 1  # up- and downsampled
    assert table["yor_Latn"]["epochs"] <= 3
    english = labels[picked][langs[picked] == "eng_Latn"]
    _, per_label = np.unique(english, return_counts=True)
    assert per_label.max() - per_label.min() <= 1  # labels balanced within the language
