"""The one record schema of the project, and how record ids are made.

Every kept shard of every stage holds `RECORD_SCHEMA` plus the columns its stages added
(`STAGE_COLUMNS`). Dropped rows carry two more columns (`drop_reason`, `dup_of`) and
quarantined input rows have their own schema (`QUARANTINE_SCHEMA`).

Record id
---------
``id = xxh3_128(source + "\\x1f" + source_key + "\\x1f" + normalised_text).hexdigest()``

* ``source`` is the configured source name, ``source_key`` the value of the source's id column
  when one is configured, else ``<file path relative to the source root>:<row number>``.
* ``normalised_text`` is :func:`curation.normalize.normalize_text` of the text.

So an id is stable across reruns and machines, changes when the text changes, and two identical
texts in different rows get different ids (which dedup needs to name the row a drop duplicates).
"""

from __future__ import annotations

import pyarrow as pa
import xxhash

ID_SEPARATOR = "\x1f"

RECORD_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False, metadata={"doc": "stable record id (see module doc)"}),
        pa.field("text", pa.string(), nullable=False, metadata={"doc": "original text, untouched"}),
        pa.field("source", pa.string(), nullable=False, metadata={"doc": "configured source name"}),
        pa.field("source_key", pa.string(), nullable=False, metadata={"doc": "id in the source, or path:row"}),
        pa.field("label", pa.string(), metadata={"doc": "gold label from the source, if any"}),
        pa.field("meta", pa.string(), metadata={"doc": "JSON object of the configured metadata columns"}),
        pa.field("norm_hash", pa.uint64(), nullable=False, metadata={"doc": "xxh3_64 of the normalised text"}),
        pa.field("n_chars", pa.int32(), nullable=False, metadata={"doc": "length of the original text"}),
    ]
)

LANG_CANDIDATE = pa.struct([("lang", pa.string()), ("score", pa.float32())])

# Columns that stages add, by stage name. Kept in one place so readers of any shard know them.
STAGE_COLUMNS: dict[str, list[pa.Field]] = {
    "lid": [
        pa.field("lang", pa.string(), metadata={"doc": "FLORES code (iso639-3_Script) or 'und'"}),
        pa.field("lang_score", pa.float32(), metadata={"doc": "probability of the top language"}),
        pa.field("lang_topk", pa.list_(LANG_CANDIDATE), metadata={"doc": "top-k (lang, score)"}),
        pa.field("script", pa.string(), metadata={"doc": "ISO 15924 script taken from the text itself"}),
        pa.field("code_mixed", pa.bool_(), metadata={"doc": "top two languages within the configured margin"}),
    ],
    "coverage": [
        pa.field("cluster", pa.int32(), metadata={"doc": "k-means cluster of the record's embedding"}),
        pa.field("density", pa.float32(), metadata={"doc": "mean cosine to its nearest neighbours"}),
        pa.field("labeled_similarity", pa.float32(),
                 metadata={"doc": "cosine to the nearest labeled record (null when none is labeled)"}),
    ],
    "semdedup": [
        pa.field("translations", pa.list_(pa.string()),
                 metadata={"doc": "ids of records in other languages that this one nearly translates"}),
    ],
}

DROP_COLUMNS = [
    pa.field("drop_reason", pa.string(), nullable=False),
    pa.field("dup_of", pa.string(), metadata={"doc": "id of the kept record this one duplicates"}),
]

QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("source", pa.string(), nullable=False),
        pa.field("source_key", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("detail", pa.string(), nullable=False),
        pa.field("raw", pa.string(), nullable=False, metadata={"doc": "the offending input, truncated"}),
    ]
)


class Reason:
    """Machine-readable reasons for quarantined and dropped rows."""

    MALFORMED = "malformed_row"
    INVALID_UTF8 = "invalid_utf8"
    MISSING_TEXT = "missing_text"
    WRONG_TYPE = "wrong_type"
    EMPTY_TEXT = "empty_text"
    TOO_LONG = "text_too_long"
    LANGUAGE_FILTERED = "language_filtered"
    EXACT_DUPLICATE = "exact_duplicate"
    NEAR_DUPLICATE = "near_duplicate"
    SEMANTIC_DUPLICATE = "semantic_duplicate"


def record_id(source: str, source_key: str, normalised_text: str) -> str:
    return xxhash.xxh3_128_hexdigest(ID_SEPARATOR.join((source, source_key, normalised_text)).encode())


def text_hash(normalised_text: str) -> int:
    return xxhash.xxh3_64_intdigest(normalised_text.encode())


def schema_after(stages: list[str]) -> pa.Schema:
    """The kept-shard schema once the named stages have run."""
    schema = RECORD_SCHEMA
    for stage in stages:
        for field in STAGE_COLUMNS.get(stage, []):
            schema = schema.append(field)
    return schema


def dropped_schema(schema: pa.Schema) -> pa.Schema:
    for field in DROP_COLUMNS:
        schema = schema.append(field)
    return schema
