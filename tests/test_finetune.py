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


@pytest.mark.slow
def test_lora_trains_only_adapters_with_one_per_language_over_the_shared_one():
    rows = [(v, r) for v, n in [("eng_Latn", 16), ("fra_Latn", 16), ("hin_Deva", 8)] for r in sib_rows(v, "train", n)]
    classes = sorted({r["category"] for _, r in rows})
    texts = [r["text"] for _, r in rows]
    y = np.array([classes.index(r["category"]) for _, r in rows])
    langs = np.array([v for v, _ in rows], dtype=object)
    config = StudentConfig(mode="lora", adapter_per="language", adapter_min_rows=16, lora_rank=4, adapter_lr=5e-3,
                           batch_size=8, finetune_epochs=2)
    student = EncoderStudent(len(classes), config, device="cpu")
    base = student.encoder.base_model.model.encoder.layer[11].attention.self.query.base_layer.weight.clone()
    history = student.fit(texts, y, langs, validation=(texts[::2], y[::2], langs[::2]))
    assert history["language_adapters"] == ["eng_Latn", "fra_Latn"]  # Hindi has too few labels: shared only
    total = sum(p.numel() for p in student.encoder.parameters())
    assert 0 < history["trainable_parameters"] < 0.01 * total
    query = student.encoder.base_model.model.encoder.layer[11].attention.self.query
    assert torch.equal(base, query.base_layer.weight)  # the backbone stays frozen
    assert query.lora_B["eng_Latn"].weight.abs().sum() > 0 and query.lora_B["shared"].weight.abs().sum() > 0
    routed, shared = student.predict_proba(texts, langs), student.predict_proba(texts)
    hindi = langs == "hin_Deva"
    assert np.allclose(routed[hindi], shared[hindi], atol=1e-6)  # no adapter of its own: the shared one
    assert not np.allclose(routed[~hindi], shared[~hindi], atol=1e-4)  # its own adapter stacked on top
    assert history["temperature"] != 1.0 and np.allclose(routed.sum(1), 1, atol=1e-5)
