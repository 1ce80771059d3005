"""Guarded back-translation on real SIB-200 text: Apertium eng ↔ spa, the guards, provenance, the cap."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pyarrow as pa
import pytest
from conftest import sib_rows

from curation.augment import (
    METHOD,
    SYNTHETIC_SOURCE,
    ApertiumTranslator,
    TransformersTranslator,
    Translator,
    TranslatorError,
    back_translate,
    cap_for,
    strip_apertium_marks,
)
from curation.config import AugmentConfig, EmbedConfig, LidConfig
from curation.lid import LanguageIdentifier
from curation.normalize import normalize_text
from curation.schema import record_id

PROVENANCE = ("id", "parent_id", "method", "backend", "pivot", "similarity", "length_ratio", "pivot_text")
N = 40


def _rows(variety: str, n: int = N) -> list[dict]:
    return [{"id": f"{variety}/{r['index_id']}", "text": r["text"], "lang": variety, "label": r["category"]}
            for r in sib_rows(variety, "train", n)]


def _apertium_ready() -> str | None:
    """None when `apertium eng-spa` works (installing it with apt if needed), else why not."""
    def ready() -> bool:
        if not shutil.which("apertium"):
            return False
        modes = subprocess.run(["apertium", "-l"], capture_output=True, text=True).stdout.split()
        return {"eng-spa", "spa-eng"} <= set(modes)

    if ready():
        return None
    if not shutil.which("apt-get"):
        return "apertium is not installed and apt-get is not available (apt-get install apertium apertium-eng-spa)"
    try:
        subprocess.run(["apt-get", "install", "-y", "-q", "apertium", "apertium-eng-spa"], check=True,
                       capture_output=True, timeout=300, env={"DEBIAN_FRONTEND": "noninteractive",
                                                              "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    except (OSError, subprocess.SubprocessError) as error:
        return f"could not apt-get install apertium apertium-eng-spa: {error}"
    return None if ready() else "apertium installed but the eng-spa pair is missing"


class CachedEncoder:
    """The project's e5-small, each text encoded once across the tests of this module."""

    def __init__(self):
        from curation.embed import _embedder

        self.inner = _embedder(EmbedConfig(device="cpu").model_dump_json())
        self.cache: dict[str, np.ndarray] = {}
        self.calls = 0

    def encode(self, texts: list[str]) -> np.ndarray:
        missing = sorted({t for t in texts if t not in self.cache})
        if missing:
            self.calls += 1
            for text, vector in zip(missing, self.inner.encode(missing)):
                self.cache[text] = vector
        return np.stack([self.cache[t] for t in texts])


class CachedTranslator:
    """Wraps a translator so the same round trips are not recomputed by every test."""

    def __init__(self, inner: Translator):
        self.inner, self.name, self.cache = inner, inner.name, {}

    def translate(self, texts, source, target):
        key = (tuple(texts), source, target)
        if key not in self.cache:
            self.cache[key] = self.inner.translate(texts, source, target)
        return self.cache[key]


class ParallelTranslator:
    """A 'translator' that looks sentences up in SIB-200 (FLORES is parallel): exact human translations,
    or, with `wrong`, the sentence of another language for chosen directions."""

    name = "sib-lookup"

    def __init__(self, varieties: list[str], wrong: dict[tuple[str, str], str] | None = None):
        self.by_lang = {v: {r["index_id"]: r["text"] for r in sib_rows(v, "train")} for v in varieties}
        self.key = {v: {text: k for k, text in texts.items()} for v, texts in self.by_lang.items()}
        self.wrong = wrong or {}

    def translate(self, texts, source, target):
        out_lang = self.wrong.get((source, target), target)
        return [self.by_lang[out_lang][self.key[source][t]] for t in texts]


class Identity:
    name = "identity"

    def translate(self, texts, source, target):
        return list(texts)


@pytest.fixture(scope="module")
def lid() -> LanguageIdentifier:
    return LanguageIdentifier(LidConfig())


@pytest.fixture(scope="module")
def encoder() -> CachedEncoder:
    return CachedEncoder()


@pytest.fixture(scope="module")
def apertium() -> CachedTranslator:
    why = _apertium_ready()
    if why:
        pytest.skip(why)
    return CachedTranslator(ApertiumTranslator())


def _conserved(rows_in: int, accepted, rejected, stats) -> None:
    assert stats["candidates"] == rows_in == len(accepted) + len(rejected) == stats["accepted"] + stats["rejected"]
    assert sum(stats["reasons"].values()) == len(rejected)
    assert all(r["reason"] and r["reason"] in r["reasons"] for r in rejected)
    for lang, s in stats["languages"].items():
        assert s["candidates"] == s["accepted"] + s["rejected"], lang


def test_marks_are_stripped_but_real_hashtags_kept():
    assert strip_apertium_marks("el *Aegean Mar y #canal de @ver") == "el Aegean Mar y canal de ver"
    assert strip_apertium_marks("vamos *#fiesta con *@ana", "let's #fiesta with @ana") == "vamos #fiesta con @ana"
    assert strip_apertium_marks("5 * 3 = 15 # ok") == "5 * 3 = 15 # ok"


def test_cap_arithmetic():
    assert cap_for(40, 0.2) == 10  # 10 / (40 + 10) = 0.2
    assert cap_for(40, 0.0) == 0
    assert cap_for(7, 0.3) == 3  # 3/10 ≤ 0.3 < 4/11


def test_missing_binary_or_pair_is_a_clear_error():
    assert isinstance(ApertiumTranslator(), Translator) and isinstance(Identity(), Translator)
    with pytest.raises(TranslatorError, match=r"not installed.*apt-get install apertium"):
        ApertiumTranslator(binary="no-such-apertium-binary").translate(["Hello"], "eng_Latn", "spa_Latn")
    if shutil.which("apertium"):
        with pytest.raises(TranslatorError, match="no Apertium pair for eng_Latn → jpn_Jpan"):
            ApertiumTranslator().translate(["Hello"], "eng_Latn", "jpn_Jpan")


@pytest.mark.slow
def test_apertium_round_trip_on_sib_english(apertium, encoder, lid):
    rows = _rows("eng_Latn")
    unlabeled = {"id": "extra/unlabeled", "text": "An unlabeled sentence stays an original.", "lang": "eng_Latn",
                 "label": None}
    table = pa.Table.from_pylist([*rows, unlabeled])
    accepted, rejected, stats = back_translate(table, apertium, AugmentConfig(max_synthetic_share=0.5), encoder, lid)
    assert isinstance(accepted, pa.Table) and isinstance(rejected, pa.Table)
    _conserved(N, accepted.to_pylist(), rejected.to_pylist(), stats)
    assert stats["skipped"] == 1 and stats["backend"] == "apertium"
    assert stats["accepted"] >= N // 2, stats  # Apertium is poor but most round trips stay on topic

    parents = {r["id"]: r for r in rows}
    for row in accepted.to_pylist():
        assert all(row[f] is not None for f in PROVENANCE)
        assert row["method"] == METHOD and row["pivot"] == "spa_Latn" and row["lang"] == "eng_Latn"
        assert row["label"] == parents[row["parent_id"]]["label"]
        assert row["text"] != parents[row["parent_id"]]["text"]
        assert "*" not in row["text"] and "*" not in row["pivot_text"]
        assert row["id"] == record_id(SYNTHETIC_SOURCE, f"{row['parent_id']}:apertium:spa_Latn",
                                      normalize_text(row["text"]))
        cfg = AugmentConfig()
        assert cfg.min_similarity <= row["similarity"] <= cfg.max_similarity
        assert cfg.min_length_ratio <= row["length_ratio"] <= cfg.max_length_ratio
    assert len(set(accepted.column("id").to_pylist())) == accepted.num_rows
    # An unchanged round trip (Apertium leaves some sentences as they were) is a copy, not a paraphrase.
    for row in rejected.to_pylist():
        if row["text"] == parents[row["parent_id"]]["text"]:
            assert {"high_similarity", "exact_duplicate"} <= set(row["reasons"]) and row["dup_of"] == row["parent_id"]

    # A stricter similarity threshold rejects more, for that reason.
    strict_acc, strict_rej, strict = back_translate(rows, apertium, AugmentConfig(min_similarity=0.98,
                                                                                  max_synthetic_share=0.5),
                                                    encoder, lid)
    _conserved(N, strict_acc, strict_rej, strict)
    assert strict["accepted"] < stats["accepted"]
    assert strict["guards"]["low_similarity"]["failed"] > stats["guards"]["low_similarity"]["failed"]
    assert all(r["similarity"] < 0.98 for r in strict_rej if r["reason"] == "low_similarity")

    # The synthetic share per language is capped, deterministically.
    capped_acc, capped_rej, capped = back_translate(rows, apertium, AugmentConfig(max_synthetic_share=0.2),
                                                    encoder, lid)
    _conserved(N, capped_acc, capped_rej, capped)
    assert len(capped_acc) == cap_for(N, 0.2) == 10 and capped["languages"]["eng_Latn"]["cap"] == 10
    assert len(capped_acc) / (N + len(capped_acc)) <= 0.2
    assert capped["reasons"]["synthetic_cap"] == stats["accepted"] - 10
    again, _, _ = back_translate(list(reversed(rows)), apertium, AugmentConfig(max_synthetic_share=0.2), encoder, lid)
    assert sorted(r["id"] for r in again) == sorted(r["id"] for r in capped_acc)

    # A student that disagrees with the gold label rejects the row (only when check_label).
    def student(texts, langs):
        return ["science/technology"] * len(texts)

    lab_acc, _, labeled = back_translate(rows, apertium, AugmentConfig(max_synthetic_share=0.5), encoder,
                                               lid, student=student)
    assert {r["label"] for r in lab_acc} <= {"science/technology"}
    assert labeled["guards"]["label_changed"]["failed"] > 0
    _, _, unchecked = back_translate(rows, apertium, AugmentConfig(max_synthetic_share=0.5, check_label=False),
                                     encoder, lid, student=student)
    assert "label_changed" not in unchecked["guards"] and unchecked["accepted"] == stats["accepted"]


@pytest.mark.slow
def test_identity_translator_is_caught_as_a_copy(encoder, lid):
    rows = _rows("eng_Latn")
    accepted, rejected, stats = back_translate(rows, Identity(), AugmentConfig(), encoder, lid)
    _conserved(N, accepted, rejected, stats)
    assert accepted == []
    assert stats["reasons"] == {"pivot_language": N}  # the "Spanish" pivot is English
    for row in rejected:
        assert {"pivot_language", "high_similarity", "exact_duplicate"} <= set(row["reasons"])
        assert row["dup_of"] == row["parent_id"]
    _, rejected, stats = back_translate(rows, Identity(), AugmentConfig(check_pivot_language=False), encoder, lid)
    assert stats["reasons"] == {"high_similarity": N} and "pivot_language" not in stats["guards"]


@pytest.mark.slow
def test_wrong_language_is_caught_by_lid_and_human_round_trip_is_a_duplicate(encoder, lid):
    rows = _rows("eng_Latn")
    # spa → eng returns Catalan: the round trip is in the wrong language.
    wrong = ParallelTranslator(["eng_Latn", "spa_Latn", "cat_Latn"], {("spa_Latn", "eng_Latn"): "cat_Latn"})
    accepted, rejected, stats = back_translate(rows, wrong, AugmentConfig(), encoder, lid)
    _conserved(N, accepted, rejected, stats)
    assert accepted == [] and stats["reasons"]["language"] >= N - 2
    assert stats["guards"]["pivot_language"]["failed"] == 0  # the Spanish leg was right
    # Human translations both ways give back the original sentence: an exact duplicate of its parent.
    exact = ParallelTranslator(["eng_Latn", "spa_Latn"])
    accepted, rejected, stats = back_translate(rows, exact, AugmentConfig(), encoder, lid)
    assert accepted == [] and stats["guards"]["exact_duplicate"]["failed"] == N
    # Two parents whose round trips are one sentence: the second synthetic copy duplicates the first.
    paraphrase = "Turkey is surrounded by the sea on three sides, the Aegean, the Black Sea and the Mediterranean."

    class SameParaphrase(ParallelTranslator):
        def translate(self, texts, source, target):
            return [paraphrase] * len(texts) if target == "eng_Latn" else super().translate(texts, source, target)

    acc, rej, stats = back_translate(rows[:2], SameParaphrase(["eng_Latn", "spa_Latn"]),
                                     AugmentConfig(min_similarity=0, max_length_ratio=10, max_synthetic_share=0.9),
                                     encoder, lid)
    assert len(acc) == 1 and [r["reason"] for r in rej] == ["exact_duplicate"] and rej[0]["dup_of"] == acc[0]["id"]


@pytest.mark.slow
def test_transformers_backend_with_a_tiny_random_marian(tmp_path, encoder, lid):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import MarianConfig, MarianMTModel, PreTrainedTokenizerFast

    texts = [r["text"] for r in sib_rows("eng_Latn", "train", 200) + sib_rows("spa_Latn", "train", 200)]
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(texts, trainers.WordLevelTrainer(vocab_size=2000, special_tokens=["<pad>", "</s>",
                                                                                              "<unk>"]))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    fast.save_pretrained(tmp_path)
    config = MarianConfig(vocab_size=tok.get_vocab_size(), d_model=32, encoder_layers=1, decoder_layers=1,
                          encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
                          decoder_ffn_dim=64, max_position_embeddings=128, pad_token_id=0, eos_token_id=1,
                          decoder_start_token_id=0, forced_eos_token_id=1)
    MarianMTModel(config).save_pretrained(tmp_path)

    translator = TransformersTranslator(str(tmp_path), device="cpu", batch_size=7, max_length=12)
    rows = _rows("eng_Latn", 12)
    out = translator.translate([r["text"] for r in rows], "eng_Latn", "spa_Latn")
    assert len(out) == len(rows) and all(isinstance(t, str) for t in out)
    assert out == translator.translate([r["text"] for r in rows], "eng_Latn", "spa_Latn")  # greedy: deterministic
    accepted, rejected, stats = back_translate(rows, translator, AugmentConfig(), encoder, lid)
    _conserved(len(rows), accepted, rejected, stats)
    assert stats["backend"] == "transformers" and accepted == []  # random weights: nothing passes
