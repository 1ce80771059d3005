"""Writing-system (ISO 15924) detection from the characters of a text, vectorised over a batch.

A text's script is the one most of its letters belong to. Han text is told apart as Simplified
(`Hans`) or Traditional (`Hant`); Japanese kana with Han gives `Jpan`; Hangul gives `Hang`.
"""

from __future__ import annotations

import hanzidentifier
import numpy as np

# (first, last, script) over Unicode blocks; letters only, so digits and punctuation count for none.
_RANGES = [
    (0x0041, 0x005A, "Latn"), (0x0061, 0x007A, "Latn"), (0x00C0, 0x024F, "Latn"), (0x0250, 0x02AF, "Latn"),
    (0x0370, 0x03FF, "Grek"), (0x0400, 0x052F, "Cyrl"), (0x0530, 0x058F, "Armn"), (0x0590, 0x05FF, "Hebr"),
    (0x0600, 0x06FF, "Arab"), (0x0700, 0x074F, "Syrc"), (0x0750, 0x077F, "Arab"), (0x0780, 0x07BF, "Thaa"),
    (0x07C0, 0x07FF, "Nkoo"), (0x08A0, 0x08FF, "Arab"), (0x0900, 0x097F, "Deva"), (0x0980, 0x09FF, "Beng"),
    (0x0A00, 0x0A7F, "Guru"), (0x0A80, 0x0AFF, "Gujr"), (0x0B00, 0x0B7F, "Orya"), (0x0B80, 0x0BFF, "Taml"),
    (0x0C00, 0x0C7F, "Telu"), (0x0C80, 0x0CFF, "Knda"), (0x0D00, 0x0D7F, "Mlym"), (0x0D80, 0x0DFF, "Sinh"),
    (0x0E00, 0x0E7F, "Thai"), (0x0E80, 0x0EFF, "Laoo"), (0x0F00, 0x0FFF, "Tibt"), (0x1000, 0x109F, "Mymr"),
    (0x10A0, 0x10FF, "Geor"), (0x1100, 0x11FF, "Hang"), (0x1200, 0x139F, "Ethi"), (0x13A0, 0x13FF, "Cher"),
    (0x1400, 0x167F, "Cans"), (0x1780, 0x17FF, "Khmr"), (0x1800, 0x18AF, "Mong"), (0x19E0, 0x19FF, "Khmr"),
    (0x1C50, 0x1C7F, "Olck"), (0x1C80, 0x1C8F, "Cyrl"), (0x1C90, 0x1CBF, "Geor"), (0x1E00, 0x1EFF, "Latn"),
    (0x1F00, 0x1FFF, "Grek"), (0x2C60, 0x2C7F, "Latn"), (0x2D00, 0x2D2F, "Geor"), (0x2D30, 0x2D7F, "Tfng"),
    (0x2D80, 0x2DDF, "Ethi"), (0x2DE0, 0x2DFF, "Cyrl"), (0x2E80, 0x2FDF, "Hani"), (0x3040, 0x309F, "Hira"),
    (0x30A0, 0x30FF, "Kana"), (0x3100, 0x312F, "Bopo"), (0x3130, 0x318F, "Hang"), (0x31F0, 0x31FF, "Kana"),
    (0x3400, 0x4DBF, "Hani"), (0x4E00, 0x9FFF, "Hani"), (0xA640, 0xA69F, "Cyrl"), (0xA720, 0xA7FF, "Latn"),
    (0xA8E0, 0xA8FF, "Deva"), (0xA960, 0xA97F, "Hang"), (0xA9E0, 0xA9FF, "Mymr"), (0xAA60, 0xAA7F, "Mymr"),
    (0xAB00, 0xAB2F, "Ethi"), (0xAB30, 0xAB6F, "Latn"), (0xAC00, 0xD7AF, "Hang"), (0xD7B0, 0xD7FF, "Hang"),
    (0xF900, 0xFAFF, "Hani"), (0xFB1D, 0xFB4F, "Hebr"), (0xFB50, 0xFDFF, "Arab"), (0xFE70, 0xFEFF, "Arab"),
    (0xFF21, 0xFF3A, "Latn"), (0xFF41, 0xFF5A, "Latn"), (0xFF66, 0xFF9F, "Kana"), (0x20000, 0x2FA1F, "Hani"),
]
_RANGES.sort()
_STARTS = np.array([r[0] for r in _RANGES], dtype=np.uint32)
_ENDS = np.array([r[1] for r in _RANGES], dtype=np.uint32)
SCRIPTS = sorted({r[2] for r in _RANGES})
_RANGE_SCRIPT = np.array([SCRIPTS.index(r[2]) for r in _RANGES])
UNKNOWN = "Zyyy"
_HAN, _HIRA, _KANA = (SCRIPTS.index(s) for s in ("Hani", "Hira", "Kana"))


def detect_scripts(texts: list[str]) -> list[str]:
    """The dominant script of each text (``Zyyy`` when it has no letters of a known script)."""
    if not texts:
        return []
    joined = "\x00".join(texts)
    codepoints = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    doc = np.cumsum(codepoints == 0)
    pos = np.searchsorted(_STARTS, codepoints, side="right") - 1
    inside = (pos >= 0) & (codepoints <= _ENDS[np.maximum(pos, 0)])
    counts = np.bincount(doc[inside] * len(SCRIPTS) + _RANGE_SCRIPT[pos[inside]],
                         minlength=len(texts) * len(SCRIPTS)).reshape(len(texts), len(SCRIPTS))
    return [_name(row, text) for row, text in zip(counts, texts)]


def _name(counts: np.ndarray, text: str) -> str:
    if not counts.any():
        return UNKNOWN
    kana = counts[_HIRA] + counts[_KANA]
    if kana and kana + counts[_HAN] >= counts.max():
        return "Jpan"
    best = int(counts.argmax())
    if best == _HAN:
        return "Hant" if hanzidentifier.identify(text) == hanzidentifier.TRADITIONAL else "Hans"
    return SCRIPTS[best]
