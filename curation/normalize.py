"""Text normalisation used for hashing, language ID and shingling. The stored text is never changed."""

from __future__ import annotations

import unicodedata

import regex

# Zero-width (non-)joiners carry meaning in Persian and Indic scripts: keep them.
_KEEP_FORMAT = {"\u200c", "\u200d"}
_WHITESPACE = regex.compile(r"\s+")
_CONTROL = regex.compile(r"[\p{Cc}\p{Cf}\p{Co}\p{Cs}]")
# Words are letters with their combining marks (Indic vowel signs are marks, not \w in `re`).
WORD = regex.compile(r"[\p{L}\p{M}\p{N}]+")
_URL = regex.compile(r"https?://\S+|www\.\S+")
_MENTION = regex.compile(r"[@#]\w+")


def _drop_control(match: regex.Match) -> str:
    char = match.group()
    if char in _KEEP_FORMAT:
        return char
    return " " if char in "\t\n\r\x0b\x0c" else ""


def normalize_text(text: str) -> str:
    """NFKC, control and format characters removed (ZWJ/ZWNJ kept), whitespace collapsed, stripped.

    Case is kept: exact duplicates are byte-identical after this, not case-insensitive matches.
    """
    text = unicodedata.normalize("NFKC", text)
    text = _CONTROL.sub(_drop_control, text)
    return _WHITESPACE.sub(" ", text).strip()


def text_for_lid(normalised: str) -> str:
    """Strip what misleads a language identifier in social text: URLs, @mentions, #hashtags."""
    stripped = _WHITESPACE.sub(" ", _MENTION.sub(" ", _URL.sub(" ", normalised))).strip()
    return stripped or normalised


def words(normalised: str) -> list[str]:
    """Lower-cased word tokens. Boundaries are found before lower-casing, so Turkish 'İ' or 'ß'
    cannot split or merge words."""
    return [token.lower() for token in WORD.findall(normalised)]
