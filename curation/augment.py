"""Guarded back-translation: labeled rows go source → pivot → source, and a synthetic row is kept
only when every guard passes (issue 6).

Backends share one small interface (`Translator`): `ApertiumTranslator` runs Debian's rule-based
Apertium (`apt-get install apertium apertium-eng-spa`, one process per batch), and
`TransformersTranslator` any local seq2seq model (Marian, NLLB, M2M-100). Languages are FLORES
codes (``eng_Latn``).

Guards, in the order that names a rejected row's ``reason`` (every failing guard is also listed in
``reasons``, so each guard's acceptance rate is measured on every candidate):

``empty_translation``   a leg returned nothing
``pivot_language``      the pivot text is not in the pivot language (a copy, or the wrong model)
``language``            the round trip is not in the source language (the project's LID, `curation.lid`)
``length_ratio``        round-trip / source characters outside [min_length_ratio, max_length_ratio]
``low_similarity``      cosine(source, round trip) < min_similarity (the multilingual encoder)
``high_similarity``     cosine > max_similarity: a copy, not a paraphrase
``label_changed``       the student labels the round trip differently from the parent's gold label
``exact_duplicate``     same normalised-text hash (`curation.schema.text_hash`) as an original row
                        or an earlier accepted synthetic row (``dup_of`` names it)
``near_duplicate``      estimated Jaccard ≥ the near-dedup threshold with an original or an earlier
                        accepted synthetic row (`curation.dedup_near` shingles, MinHash and bands)
``synthetic_cap``       over `max_synthetic_share` of the language's rows after augmenting; the rows
                        kept are the first by synthetic id (deterministic, independent of input order)

Conservation: ``candidates = accepted + rejected`` overall and per language, checked before return.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import pyarrow as pa
import regex

from curation.config import AugmentConfig, NearDedupConfig
from curation.dedup_near import MinHasher, band_hashes, shingles
from curation.normalize import normalize_text
from curation.schema import record_id, text_hash
from curation.scripts import detect_scripts

METHOD = "back_translation"
SYNTHETIC_SOURCE = f"augment:{METHOD}"
GUARDS = ("empty_translation", "pivot_language", "language", "length_ratio", "low_similarity",
          "high_similarity", "label_changed", "exact_duplicate", "near_duplicate", "synthetic_cap")


@runtime_checkable
class Translator(Protocol):
    name: str

    def translate(self, texts: list[str], source: str, target: str) -> list[str]:
        """One translation per text, in order; `source` and `target` are FLORES codes."""
        ...


class TranslatorError(RuntimeError):
    pass


# --------------------------------------------------------------------------------------- Apertium

# FLORES language → the codes Apertium modes use for it (ISO 639-3 first, then 639-1 / others).
APERTIUM_CODES: dict[str, tuple[str, ...]] = {
    "eng_Latn": ("eng", "en"), "spa_Latn": ("spa", "es"), "cat_Latn": ("cat", "ca"),
    "glg_Latn": ("glg", "gl"), "eus_Latn": ("eus", "eu"), "por_Latn": ("por", "pt"),
    "fra_Latn": ("fra", "fr"), "ita_Latn": ("ita", "it"), "ron_Latn": ("ron", "ro"),
    "epo_Latn": ("epo", "eo"), "oci_Latn": ("oci", "oc"), "ast_Latn": ("ast",),
    "srd_Latn": ("srd",), "isl_Latn": ("isl", "is"), "swe_Latn": ("swe", "sv"),
    "dan_Latn": ("dan", "da"), "nob_Latn": ("nob", "nor"), "nno_Latn": ("nno",),
    "mkd_Cyrl": ("mkd", "mk"), "bul_Cyrl": ("bul", "bg"), "rus_Cyrl": ("rus",),
    "ukr_Cyrl": ("ukr",), "bel_Cyrl": ("bel",), "hrv_Latn": ("hbs",), "bos_Latn": ("hbs",),
    "srp_Cyrl": ("hbs",), "slv_Latn": ("slv",), "pol_Latn": ("pol",), "szl_Latn": ("szl",),
    "ind_Latn": ("ind", "id"), "zsm_Latn": ("zlm", "ms"), "afr_Latn": ("afr", "af"),
    "nld_Latn": ("nld", "nl"), "hin_Deva": ("hin",), "urd_Arab": ("urd",),
}
# Apertium's marks: * unknown word, # generation error, @ transfer error, prefixing a word (also
# inside a token, as in ``1800*s``).
_MARKED_WORD = regex.compile(r"[*#@]+([\p{L}\p{M}\p{N}][\p{L}\p{M}\p{N}_'-]*)")


def strip_apertium_marks(text: str, source: str = "") -> str:
    """Remove Apertium's ``*``/``#``/``@`` word marks, keeping a marked token (``#tag``, ``@user``,
    ``a*b``) that the source text itself contains."""
    def unmark(match: regex.Match) -> str:
        token, word = match.group(0), match.group(1)
        for start in range(len(token) - len(word)):
            if token[start:] in source:
                return token[start:]
        return word

    return _MARKED_WORD.sub(unmark, text)


class ApertiumTranslator:
    """Debian's Apertium, one `apertium <mode>` process per batch, one sentence per line.

    Line breaks inside a text become spaces, so output lines match input lines; a batch whose line
    count still differs is retried one text per process. Marks of unknown words are stripped.
    """

    def __init__(self, binary: str = "apertium", batch_size: int = 2000, timeout: float = 600.0,
                 modes: Mapping[tuple[str, str], str] | None = None):
        self.binary = binary
        self.batch_size = batch_size
        self.timeout = timeout
        self.extra_modes = dict(modes or {})
        self.name = "apertium"
        self._available: set[str] | None = None

    def available_modes(self) -> set[str]:
        if self._available is None:
            path = shutil.which(self.binary)
            if path is None:
                raise TranslatorError(f"the `{self.binary}` binary is not installed: apt-get install apertium "
                                      "apertium-eng-spa (or the package of your language pair)")
            done = subprocess.run([path, "-l"], capture_output=True, text=True, timeout=60)
            self._available = {line.strip() for line in done.stdout.splitlines() if line.strip()}
        return self._available

    def mode(self, source: str, target: str) -> str:
        if (source, target) in self.extra_modes:
            return self.extra_modes[(source, target)]
        available = self.available_modes()
        for src in APERTIUM_CODES.get(source, (source.split("_")[0],)):
            for tgt in APERTIUM_CODES.get(target, (target.split("_")[0],)):
                if f"{src}-{tgt}" in available:
                    return f"{src}-{tgt}"
        raise TranslatorError(f"no Apertium pair for {source} → {target}; installed: {sorted(available) or 'none'}. "
                              f"Install the Debian package (apt-cache search apertium), e.g. apertium-eng-spa")

    def _run(self, mode: str, lines: list[str]) -> list[str]:
        payload = "".join(line + "\n" for line in lines)
        done = subprocess.run([shutil.which(self.binary) or self.binary, mode], input=payload, capture_output=True,
                              text=True, timeout=self.timeout)
        if done.returncode != 0:
            raise TranslatorError(f"apertium {mode} failed ({done.returncode}): {done.stderr.strip()[:500]}")
        out = done.stdout.split("\n")
        if out and out[-1] == "":
            out.pop()
        return out

    def translate(self, texts: list[str], source: str, target: str) -> list[str]:
        mode = self.mode(source, target)
        lines = [" ".join(t.split()) for t in texts]
        result: list[str] = []
        for start in range(0, len(lines), self.batch_size):
            batch = lines[start:start + self.batch_size]
            out = self._run(mode, batch)
            if len(out) != len(batch):  # should not happen: fall back to one text per process
                out = [" ".join(self._run(mode, [line])) for line in batch]
            result.extend(out)
        return [strip_apertium_marks(out, src).strip() for out, src in zip(result, texts)]


# ------------------------------------------------------------------------------------ transformers

class TransformersTranslator:
    """A seq2seq model via transformers: greedy, batched, outputs capped at `max_length` tokens.

    `model_path` is one multilingual model (NLLB: FLORES codes; M2M-100: ISO 639-1 codes via its
    tokenizer's `get_lang_id`) or a Marian-style pair model; `pair_models` maps (source, target)
    to a model per direction (e.g. opus-mt-en-es and opus-mt-es-en). Local paths or hub ids.
    """

    def __init__(self, model_path: str | None = None, *, pair_models: Mapping[tuple[str, str], str] | None = None,
                 device: str | None = None, batch_size: int = 16, max_length: int = 256):
        if model_path is None and not pair_models:
            raise ValueError("TransformersTranslator needs model_path or pair_models")
        self.model_path = model_path
        self.pair_models = dict(pair_models or {})
        self.device = device
        self.batch_size = batch_size
        self.max_length = max_length
        self.name = "transformers"
        self._loaded: dict[str, tuple] = {}

    def _load(self, path: str):
        if path not in self._loaded:
            import torch
            from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

            from curation.encoder import default_device

            device = self.device or default_device()
            tokenizer = AutoTokenizer.from_pretrained(path)
            model = AutoModelForSeq2SeqLM.from_pretrained(path)
            if device.startswith("cuda"):
                model = model.to(torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
            self._loaded[path] = (tokenizer, model.to(device).eval(), device)
        return self._loaded[path]

    def _language_setup(self, tokenizer, source: str, target: str) -> dict:
        """Generation arguments that choose the target language of a multilingual model."""
        if hasattr(tokenizer, "get_lang_id"):  # M2M-100: ISO 639-1 codes
            tokenizer.src_lang = _iso1(source)
            return {"forced_bos_token_id": tokenizer.get_lang_id(_iso1(target))}
        vocab = tokenizer.get_vocab()
        if target in vocab:  # NLLB-style FLORES language tokens
            if hasattr(tokenizer, "src_lang") and source in vocab:
                tokenizer.src_lang = source
            return {"forced_bos_token_id": vocab[target]}
        return {}  # a pair model: the direction is the model

    def translate(self, texts: list[str], source: str, target: str) -> list[str]:
        import torch

        path = self.pair_models.get((source, target), self.model_path)
        if path is None:
            raise TranslatorError(f"no transformers model for {source} → {target}")
        tokenizer, model, device = self._load(path)
        extra = self._language_setup(tokenizer, source, target)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out: list[str] = [""] * len(texts)
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            batch = tokenizer([texts[i] for i in idx], return_tensors="pt", padding=True, truncation=True,
                              max_length=self.max_length).to(device)
            batch.pop("token_type_ids", None)
            with torch.inference_mode():
                generated = model.generate(**batch, num_beams=1, do_sample=False,
                                           max_new_tokens=self.max_length, **extra)
            for i, text in zip(idx, tokenizer.batch_decode(generated, skip_special_tokens=True)):
                out[i] = text.strip()
        return out


def _iso1(flores: str) -> str:
    return next((c for c in APERTIUM_CODES.get(flores, ()) if len(c) == 2), flores[:2])


def make_translator(config: AugmentConfig, **kwargs) -> Translator:
    """The backend `config.backend` names (transformers: `config.model`)."""
    if config.backend == "apertium":
        return ApertiumTranslator(**kwargs)
    if not config.model:
        raise ValueError("augment.backend 'transformers' needs augment.model")
    return TransformersTranslator(config.model, **kwargs)


# ---------------------------------------------------------------------------------------- guards

class _SyntheticIndex:
    """Exact (normalised hash) and near (MinHash + bands, verified Jaccard) lookup of texts."""

    def __init__(self, near: NearDedupConfig):
        self.near = near
        self.hasher = MinHasher(near.num_perm)
        self.hashes: dict[int, str] = {}
        self.buckets: dict[tuple[int, int], list[int]] = defaultdict(list)
        self.signatures: list[np.ndarray] = []
        self.ids: list[str] = []

    def signatures_of(self, texts: list[str], scripts: list[str]) -> np.ndarray:
        if not texts:
            return np.empty((0, self.near.num_perm), dtype=np.uint32)
        n = self.near
        return self.hasher.signatures([shingles(t, s, n.word_ngram, n.char_ngram) for t, s in zip(texts, scripts)])

    def add(self, ids: list[str], texts: list[str], scripts: list[str], signatures: np.ndarray | None = None) -> None:
        for record, text in zip(ids, texts):
            self.hashes.setdefault(text_hash(normalize_text(text)), record)
        sigs = self.signatures_of(texts, scripts) if signatures is None else signatures
        if not len(sigs):
            return
        bands = band_hashes(sigs, self.near.bands, self.near.rows)
        for row, sig in enumerate(sigs):
            position = len(self.ids)
            self.ids.append(ids[row])
            self.signatures.append(sig)
            for band, value in enumerate(bands[row]):
                self.buckets[(band, int(value))].append(position)

    def exact(self, text: str) -> str | None:
        return self.hashes.get(text_hash(normalize_text(text)))

    def near_match(self, signature: np.ndarray) -> str | None:
        bands = band_hashes(signature[None, :], self.near.bands, self.near.rows)[0]
        seen = {p for band, value in enumerate(bands) for p in self.buckets.get((band, int(value)), ())}
        best, best_sim = None, -1.0
        for p in sorted(seen):
            sim = float((self.signatures[p] == signature).mean())
            if sim >= self.near.threshold and sim > best_sim:
                best, best_sim = self.ids[p], sim
        return best


def cap_for(originals: int, share: float) -> int:
    """Most synthetic rows a language with `originals` rows may get: synthetic / (originals +
    synthetic) ≤ share."""
    return math.floor(share * originals / (1 - share) + 1e-9) if share > 0 else 0


def _as_rows(rows: pa.Table | Sequence[Mapping]) -> list[dict]:
    return rows.to_pylist() if isinstance(rows, pa.Table) else [dict(r) for r in rows]


def back_translate(rows: pa.Table | Sequence[Mapping], translator: Translator, config: AugmentConfig,
                   encoder, lid, student: Callable[[list[str], list[str]], Sequence[str]] | None = None, *,
                   near: NearDedupConfig | None = None) -> tuple[pa.Table | list[dict], pa.Table | list[dict], dict]:
    """Back-translate the labeled rows whose `lang` has a pivot in `config.pivots`.

    rows: a pyarrow Table or dicts with at least ``id``, ``text``, ``lang``, ``label`` (all rows,
    labeled or not, count as originals for the duplicate guards and the per-language cap).
    encoder: anything with ``encode(texts) -> L2-normalised vectors`` (`curation.embed.Embedder`).
    lid: a `curation.lid.LanguageIdentifier` (``predict(texts)`` → objects with ``lang``).
    student: (texts, languages) → predicted labels; with `config.check_label`, a changed label rejects the row.
    near: the near-duplicate settings (default `NearDedupConfig()`: threshold 0.8).

    Returns (accepted, rejected, stats), tables when `rows` is a Table, else lists of dicts.
    Accepted rows: id, text, lang, label, source, source_key, norm_hash, n_chars, script, parent_id,
    method, backend, pivot, pivot_text, similarity, length_ratio. Rejected rows: the same plus
    ``reason`` (the first failing guard), ``reasons`` (all of them) and ``dup_of``.
    """
    started = time.perf_counter()
    as_table = isinstance(rows, pa.Table)
    originals = _as_rows(rows)
    near = near or NearDedupConfig()
    backend = getattr(translator, "name", type(translator).__name__)
    candidates = [r for r in originals if r.get("label") is not None and r.get("lang") in config.pivots
                  and (r.get("text") or "").strip()]
    skipped = len(originals) - len(candidates)

    # Round trips, one batch per (language, pivot) in each direction.
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, row in enumerate(candidates):
        groups[(row["lang"], config.pivots[row["lang"]])].append(i)
    pivot_text, back_text = [""] * len(candidates), [""] * len(candidates)
    translate_seconds = 0.0
    for (lang, pivot), idx in sorted(groups.items()):
        t0 = time.perf_counter()
        there = translator.translate([candidates[i]["text"] for i in idx], lang, pivot)
        back = translator.translate(list(there), pivot, lang)
        translate_seconds += time.perf_counter() - t0
        if len(there) != len(idx) or len(back) != len(idx):
            raise TranslatorError(f"{backend}: {len(idx)} texts in, {len(there)}/{len(back)} out ({lang} ↔ {pivot})")
        for i, p, b in zip(idx, there, back):
            pivot_text[i], back_text[i] = p or "", b or ""

    n = len(candidates)
    failing: list[list[str]] = [[] for _ in range(n)]
    checked: Counter = Counter()

    def guard(name: str, fails: Sequence[bool], among: Sequence[int] | None = None) -> None:
        for i in (range(n) if among is None else among):
            checked[name] += 1
            if fails[i]:
                failing[i].append(name)

    src_texts = [r["text"] for r in candidates]
    empty = [not b.strip() or not p.strip() for p, b in zip(pivot_text, back_text)]
    guard("empty_translation", empty)
    live = [i for i in range(n) if not empty[i]]

    scripts = detect_scripts(back_text) if n else []
    if config.check_pivot_language and live:
        predicted = lid.predict([pivot_text[i] for i in live])
        wrong = dict.fromkeys(range(n), False) | {i: p.lang != config.pivots[candidates[i]["lang"]]
                                                  for i, p in zip(live, predicted)}
        guard("pivot_language", wrong, live)
    if config.check_language and live:
        predicted = lid.predict([back_text[i] for i in live])
        wrong = dict.fromkeys(range(n), False) | {i: p.lang != candidates[i]["lang"] for i, p in zip(live, predicted)}
        guard("language", wrong, live)

    ratio = [len(b) / max(len(s), 1) for s, b in zip(src_texts, back_text)]
    guard("length_ratio", [not (config.min_length_ratio <= r <= config.max_length_ratio) for r in ratio], live)

    similarity = [float("nan")] * n
    if live:
        src_vecs = np.asarray(encoder.encode([src_texts[i] for i in live]), dtype=np.float32)
        out_vecs = np.asarray(encoder.encode([back_text[i] for i in live]), dtype=np.float32)
        for i, s in zip(live, (src_vecs * out_vecs).sum(axis=1)):
            similarity[i] = float(s)
    guard("low_similarity", [not (s >= config.min_similarity) for s in similarity], live)
    guard("high_similarity", [s > config.max_similarity for s in similarity], live)

    if student is not None and config.check_label and live:
        predicted_labels = list(student([back_text[i] for i in live], [candidates[i]["lang"] for i in live]))
        changed = dict.fromkeys(range(n), False) | {
            i: str(p) != str(candidates[i]["label"]) for i, p in zip(live, predicted_labels)}
        guard("label_changed", changed, live)

    # Synthetic rows (provenance), built for every candidate so rejected rows carry it too.
    synthetic = []
    for i, row in enumerate(candidates):
        pivot = config.pivots[row["lang"]]
        key = f"{row['id']}:{backend}:{pivot}"
        text = back_text[i]
        synthetic.append({
            "id": record_id(SYNTHETIC_SOURCE, key, normalize_text(text)), "text": text, "lang": row["lang"],
            "label": row["label"], "source": SYNTHETIC_SOURCE, "source_key": key,
            "norm_hash": text_hash(normalize_text(text)), "n_chars": len(text), "script": scripts[i] if n else None,
            "parent_id": row["id"], "method": METHOD, "backend": backend, "pivot": pivot,
            "pivot_text": pivot_text[i], "similarity": None if math.isnan(similarity[i]) else similarity[i],
            "length_ratio": ratio[i], "dup_of": None})

    # Duplicates: of any original (every candidate), then of an earlier accepted synthetic row.
    if config.check_duplicates:
        index = _SyntheticIndex(near)
        orig_scripts = [r.get("script") or s for r, s in zip(originals, detect_scripts([r["text"] for r in originals]))]
        index.add([r["id"] for r in originals], [r["text"] for r in originals], orig_scripts)
        syn_sigs = index.signatures_of([s["text"] for s in synthetic], [s["script"] for s in synthetic])
        def duplicate(i: int) -> bool:
            """Marks row i when it repeats an original or an accepted synthetic row."""
            for guard, dup in (("exact_duplicate", index.exact(back_text[i])),
                               ("near_duplicate", index.near_match(syn_sigs[i]))):
                if dup is not None:
                    failing[i].append(guard)
                    synthetic[i]["dup_of"] = dup
                    return True
            return False

        for i in live:
            checked["exact_duplicate"] += 1
            checked["near_duplicate"] += 1
            duplicate(i)
        # Among synthetic rows that passed everything so far, first by id wins.
        for i in sorted((i for i in live if not failing[i]), key=lambda i: synthetic[i]["id"]):
            if not duplicate(i):
                index.add([synthetic[i]["id"]], [back_text[i]], [synthetic[i]["script"]], syn_sigs[i:i + 1])

    # Per-language cap on what is left, first by synthetic id.
    per_lang_rows = Counter(r.get("lang") for r in originals)
    caps = {lang: cap_for(per_lang_rows[lang], config.max_synthetic_share) for lang in {c["lang"] for c in candidates}}
    survivors: dict[str, list[int]] = defaultdict(list)
    for i in range(n):
        if not failing[i]:
            survivors[candidates[i]["lang"]].append(i)
    for lang, idx in survivors.items():
        for rank, i in enumerate(sorted(idx, key=lambda i: synthetic[i]["id"])):
            checked["synthetic_cap"] += 1
            if rank >= caps[lang]:
                failing[i].append("synthetic_cap")

    accepted, rejected = [], []
    for i in range(n):
        if failing[i]:
            reasons = sorted(set(failing[i]), key=GUARDS.index)
            rejected.append({**synthetic[i], "reason": reasons[0], "reasons": reasons})
        else:
            accepted.append(synthetic[i])

    stats = _stats(candidates, accepted, rejected, failing, checked, caps, skipped, backend, translate_seconds,
                   time.perf_counter() - started)
    if as_table:
        return _to_table(accepted, rejected=False), _to_table(rejected, rejected=True), stats
    return accepted, rejected, stats


def _stats(candidates, accepted, rejected, failing, checked, caps, skipped, backend, translate_seconds,
           seconds) -> dict:
    n = len(candidates)
    reasons = Counter(r["reason"] for r in rejected)
    guards = {}
    for name in GUARDS:
        if checked[name]:
            failed = sum(name in f for f in failing)
            guards[name] = {"checked": checked[name], "failed": failed,
                            "acceptance_rate": round(1 - failed / checked[name], 4)}
    languages = {}
    for lang in sorted({c["lang"] for c in candidates}):
        cand = sum(c["lang"] == lang for c in candidates)
        acc = sum(a["lang"] == lang for a in accepted)
        rej = [r for r in rejected if r["lang"] == lang]
        languages[lang] = {"candidates": cand, "accepted": acc, "rejected": len(rej),
                           "acceptance_rate": round(acc / cand, 4) if cand else 0.0, "cap": caps[lang],
                           "reasons": dict(Counter(r["reason"] for r in rej)),
                           "failed": {name: sum(name in r["reasons"] for r in rej) for name in guards}}
        assert cand == acc + len(rej), f"augment conservation broken for {lang}"
    assert n == len(accepted) + len(rejected) == len(accepted) + sum(reasons.values()), "augment conservation broken"
    return {"method": METHOD, "backend": backend, "candidates": n, "accepted": len(accepted),
            "rejected": len(rejected), "skipped": skipped,
            "acceptance_rate": round(len(accepted) / n, 4) if n else 0.0, "reasons": dict(reasons),
            "guards": guards, "languages": languages, "translate_seconds": round(translate_seconds, 3),
            "round_trips_per_second": round(n / translate_seconds, 1) if translate_seconds > 0 else None,
            "seconds": round(seconds, 3)}


SYNTHETIC_SCHEMA = pa.schema([
    ("id", pa.string()), ("text", pa.string()), ("lang", pa.string()), ("label", pa.string()),
    ("source", pa.string()), ("source_key", pa.string()), ("norm_hash", pa.uint64()), ("n_chars", pa.int32()),
    ("script", pa.string()), ("parent_id", pa.string()), ("method", pa.string()), ("backend", pa.string()),
    ("pivot", pa.string()), ("pivot_text", pa.string()), ("similarity", pa.float32()),
    ("length_ratio", pa.float32()), ("dup_of", pa.string()),
])
REJECTED_SCHEMA = SYNTHETIC_SCHEMA.append(pa.field("reason", pa.string())).append(
    pa.field("reasons", pa.list_(pa.string())))


def _to_table(rows: list[dict], rejected: bool) -> pa.Table:
    schema = REJECTED_SCHEMA if rejected else SYNTHETIC_SCHEMA
    rows = [{**r, "label": None if r["label"] is None else str(r["label"])} for r in rows]
    return pa.Table.from_pylist(rows, schema=schema)
