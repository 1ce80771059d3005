"""Real text with planted near-duplicates of known Jaccard similarity, for tests and benchmarks.

Each planted copy edits a real sentence (word substitutions for spaced scripts, character
substitutions for unspaced ones) and records the exact Jaccard similarity of the two shingle
sets, computed with the same shingling the dedup stage uses.
"""

from __future__ import annotations

import random

from curation.dedup_near import UNSPACED_SCRIPTS, shingles
from curation.normalize import normalize_text, words


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def _edit(text: str, script: str, edits: int, rng: random.Random, vocabulary: list[str]) -> str:
    """Half the edits substitute a unit in place, half append one at the end (as re-crawls do)."""
    unspaced = script in UNSPACED_SCRIPTS
    units = list("".join(words(normalize_text(text)))) if unspaced else normalize_text(text).split()
    for _ in range(edits):
        unit = rng.choice(vocabulary)[0] if unspaced else rng.choice(vocabulary)
        if rng.random() < 0.5:
            units[rng.randrange(len(units))] = unit
        else:
            units.append(unit)
    return ("" if unspaced else " ").join(units)


def plant(docs: list[dict], share: float, seed: int = 0, word_ngram: int = 3, char_ngram: int = 4) -> list[dict]:
    """Copies of a `share` of `docs` (dicts with id, text, script), edited 0..6 times at random.

    Returns the copies as dicts with id, text, script, parent (the original id) and jaccard.
    """
    rng = random.Random(seed)
    vocabulary = [w for d in docs[:2000] for w in normalize_text(d["text"]).split()]
    copies = []
    for doc in rng.sample(docs, int(len(docs) * share)):
        edits = rng.randint(0, 6)
        text = _edit(doc["text"], doc["script"], edits, rng, vocabulary)
        similarity = jaccard(set(shingles(doc["text"], doc["script"], word_ngram, char_ngram)),
                             set(shingles(text, doc["script"], word_ngram, char_ngram)))
        copies.append({"id": f"{doc['id']}~{len(copies)}", "text": text, "script": doc["script"],
                       "parent": doc["id"], "jaccard": similarity})
    return copies
