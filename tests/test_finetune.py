"""Student mode `finetune` on the real converted encoder (CPU here; the same code runs bf16 on a GPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import sib_rows

from curation.config import StudentConfig
from curation.student import EncoderStudent, is_better


@pytest.mark.slow
def test_partial_finetuning_freezes_lower_layers_and_decays_learning_rates():
    varieties = ["eng_Latn", "fra_Latn", "hin_Deva"]
    rows = [(v, r) for v in varieties for r in sib_rows(v, "train", 16)]
    classes = sorted({r["category"] for _, r in rows})
    texts = [r["text"] for _, r in rows]
    y = np.array([classes.index(r["category"]) for _, r in rows])
    langs = np.array([v for v, _ in rows], dtype=object)
    config = StudentConfig(mode="finetune", freeze_layers=10, encoder_lr=1e-4, layer_lr_decay=0.5, lr=1e-2,
                           batch_size=8, grad_accumulation=2, finetune_epochs=2, max_steps=5)
    student = EncoderStudent(len(classes), config, device="cpu")
    frozen = student.encoder.encoder.layer[9].output.dense.weight.clone()
    trained = student.encoder.encoder.layer[11].output.dense.weight.clone()
    groups = {g["name"]: g["lr"] for g in student.parameter_groups()}
    assert groups == {"head": 1e-2, "layer 10": pytest.approx(5e-5), "layer 11": pytest.approx(1e-4)}
    history = student.fit(texts, y, langs, validation=(texts[::3], y[::3], langs[::3]))
    assert history["steps"] == 5 and history["examples"] == 5 * 2 * 8  # the compute cap, with accumulation
    assert history["examples_per_s"] > 0 and history["device"] == "cpu"
    assert torch.equal(frozen, student.encoder.encoder.layer[9].output.dense.weight)
    assert not torch.equal(trained, student.encoder.encoder.layer[11].output.dense.weight)
    probs = student.predict_proba(texts[:5])
    assert probs.shape == (5, len(classes)) and np.allclose(probs.sum(1), 1, atol=1e-5)


def test_rollback_rule_refuses_a_mean_gain_that_costs_a_language():
    best = {"eng": 0.8, "yor": 0.5}
    assert is_better({"eng": 0.9, "yor": 0.5}, best, 0.65, 0.05)
    assert not is_better({"eng": 0.95, "yor": 0.4}, best, 0.65, 0.05)  # mean up, Yoruba down 0.1
    assert is_better({"eng": 0.1}, None, -1.0, 0.05)
