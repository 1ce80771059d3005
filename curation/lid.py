"""Language identification with any fastText LID model, reported as FLORES codes (``eng_Latn``).

The default model is fastText's ``lid.176.ftz`` (packaged in `curation/assets`, CC BY-SA 3.0).
Its labels are ISO 639-1/-3 codes mapped to the ISO 639-3 code FLORES-200 uses
(`assets/lid176_iso639_3.json`: ``ar`` → ``arb``, ``fa`` → ``pes``...). Models whose labels are
already FLORES-style (GlotLID, OpenLID: ``__label__eng_Latn``) keep their language code. The
script part is always read from the text itself (`curation.scripts`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import fasttext
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curation.config import LidConfig
from curation.normalize import normalize_text, text_for_lid
from curation.schema import LANG_CANDIDATE, STAGE_COLUMNS, Reason
from curation.scripts import detect_scripts
from curation.stages import Stage, StageOutput, split_by_mask

ASSETS = Path(__file__).parent / "assets"
DEFAULT_MODEL = ASSETS / "lid.176.ftz"
UNDETERMINED = "und"
_LABEL_PREFIX = "__label__"
# Languages whose FLORES script is fixed whatever CJK characters a sentence happens to use.
_CJK = {"Hans", "Hant", "Jpan", "Hang"}
_FIXED_SCRIPT = {"jpn": "Jpan", "kor": "Hang"}


@lru_cache(maxsize=1)
def _lid176_codes() -> dict[str, str]:
    return json.loads((ASSETS / "lid176_iso639_3.json").read_text())


def language_code(label: str) -> str:
    """ISO 639-3 code of a model label (``__label__en`` → ``eng``, ``__label__eng_Latn`` → ``eng``)."""
    label = label.removeprefix(_LABEL_PREFIX)
    if "_" in label:
        return label.split("_")[0]
    return _lid176_codes().get(label, label)


@dataclass
class Prediction:
    lang: str
    score: float
    topk: list[dict]
    script: str
    code_mixed: bool


@lru_cache(maxsize=4)
def load_model(path: str | None = None) -> fasttext.FastText._FastText:
    return fasttext.load_model(str(path or DEFAULT_MODEL))


class LanguageIdentifier:
    def __init__(self, config: LidConfig):
        self.config = config
        self.model = load_model(config.model_path)

    def codes(self) -> set[str]:
        """ISO 639-3 codes the model can predict."""
        return {language_code(label) for label in self.model.get_labels()}

    def predict(self, texts: list[str]) -> list[Prediction]:
        lid_texts = [text_for_lid(normalize_text(t)) for t in texts]
        scripts = detect_scripts(lid_texts)
        k = max(self.config.top_k, 2)
        labels, probs = self.model.predict(lid_texts, k=k, threshold=0.0)
        mixed = self._mixed_segments(lid_texts)
        return [self._decide(lab, np.asarray(p, dtype=np.float32), script, seg_mixed)
                for lab, p, script, seg_mixed in zip(labels, probs, scripts, mixed)]

    def _mixed_segments(self, texts: list[str]) -> list[bool]:
        """Whether segments of `code_mixed_window` words are confidently in different languages.

        A whole-text prediction hides code-switching (the dominant language takes the softmax), so
        texts of two or more windows are also identified window by window.
        """
        window = self.config.code_mixed_window
        owners, segments = [], []
        for index, text in enumerate(texts):
            tokens = text.split()
            if len(tokens) >= 2 * window:
                for start in range(0, len(tokens) - window // 2, window):
                    owners.append(index)
                    segments.append(" ".join(tokens[start:start + window]))
        mixed = [False] * len(texts)
        if not segments:
            return mixed
        labels, probs = self.model.predict(segments, k=1, threshold=0.0)
        seen: dict[int, set[str]] = {}
        for owner, label, prob in zip(owners, labels, probs):
            if prob[0] >= 0.5:
                seen.setdefault(owner, set()).add(language_code(label[0]))
        for owner, languages in seen.items():
            mixed[owner] = len(languages) > 1
        return mixed

    def _decide(self, labels: list[str], probs: np.ndarray, script: str, segments_mixed: bool) -> Prediction:
        merged: dict[str, float] = {}  # two labels can map to one language (e.g. 'sh' and 'hbs')
        for label, p in zip(labels, probs):
            language = language_code(label)
            own_script = _FIXED_SCRIPT.get(language, script) if script in _CJK else script
            code = f"{language}_{own_script}"
            merged[code] = min(1.0, merged.get(code, 0.0) + float(p))  # fastText can exceed 1 by 1e-4
        ranked = sorted(merged.items(), key=lambda kv: -kv[1])
        top, score = ranked[0]
        second = ranked[1][1] if len(ranked) > 1 else 0.0
        threshold = self.config.thresholds.get(top, self.config.threshold)
        return Prediction(
            lang=top if score >= threshold else UNDETERMINED,
            score=score,
            topk=[{"lang": c, "score": s} for c, s in ranked[: self.config.top_k]],
            script=top.rsplit("_", 1)[-1],
            code_mixed=segments_mixed or (score - second) < self.config.code_mixed_margin,
        )


class LanguageIdStage(Stage):
    name = "lid"

    def __init__(self, config: LidConfig):
        self.config = config
        self.identifier = LanguageIdentifier(config)

    def process(self, table: pa.Table, shard: str) -> StageOutput:
        texts = table.column("text").to_pylist()
        preds: list[Prediction] = []
        for start in range(0, len(texts), self.config.batch_size):
            preds.extend(self.identifier.predict(texts[start:start + self.config.batch_size]))
        fields = {f.name: f for f in STAGE_COLUMNS["lid"]}
        columns = {
            "lang": pa.array([p.lang for p in preds], pa.string()),
            "lang_score": pa.array([p.score for p in preds], pa.float32()),
            "lang_topk": pa.array([p.topk for p in preds], pa.list_(LANG_CANDIDATE)),
            "script": pa.array([p.script for p in preds], pa.string()),
            "code_mixed": pa.array([p.code_mixed for p in preds], pa.bool_()),
        }
        for name, values in columns.items():
            table = table.append_column(fields[name], values)
        return self._filter(table)

    def _filter(self, table: pa.Table) -> StageOutput:
        lang = table.column("lang")
        drop = pa.array(np.zeros(table.num_rows, dtype=bool))
        if self.config.keep_languages is not None:
            drop = pc.invert(pc.is_in(lang, pa.array([*self.config.keep_languages, UNDETERMINED])))
        if self.config.drop_undetermined:
            drop = pc.or_(drop, pc.equal(lang, UNDETERMINED))
        if not pc.any(drop).as_py():
            return StageOutput(table)
        reasons = pa.array([Reason.LANGUAGE_FILTERED] * table.num_rows, pa.string())
        return split_by_mask(table, drop, reasons, pa.nulls(table.num_rows, pa.string()))
