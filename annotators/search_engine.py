"""A SQLite search engine for argilla-server, so the real server runs without Elasticsearch.

Import this module only in the server's own virtualenv (annotators/launch.py does): importing it
registers the engine as ``ARGILLA_SEARCH_ENGINE=sqlite``. The index lives in ``search_index.db``
in ``ARGILLA_HOME_PATH``, beside the server's database, so the rq worker (a separate process that
updates record statuses) and the server see the same index.

Records, responses, suggestions and vectors each get a table; status, filter, sort and text
scoring run in Python over one dataset's rows, mirroring what the Elasticsearch engine does
(see argilla_server/search_engine/commons.py). That is exact and simple, and fast enough for the
tens of thousands of records of a local annotation round; it is not meant for millions.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import sqlite3
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from argilla_server.enums import MetadataPropertyType, SimilarityOrder, SortOrder
from argilla_server.models import Dataset, MetadataProperty, Record, Response, Suggestion, User, VectorSettings
from argilla_server.search_engine.base import (
    AndFilter,
    Filter,
    FilterScope,
    FloatMetadataMetrics,
    IntegerMetadataMetrics,
    MetadataFilterScope,
    MetadataMetrics,
    Order,
    RangeFilter,
    RecordFilterScope,
    ResponseFilterScope,
    SearchEngine,
    SearchResponseItem,
    SearchResponses,
    SuggestionFilterScope,
    TermsFilter,
    TermsMetrics,
    TextQuery,
)
from argilla_server.settings import settings

ENGINE_NAME = "sqlite"
INDEX_FILE = "search_index.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    id TEXT PRIMARY KEY, dataset_id TEXT NOT NULL, external_id TEXT, status TEXT,
    inserted_at TEXT, updated_at TEXT, fields TEXT NOT NULL, metadata TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS records_by_dataset ON records (dataset_id);
CREATE TABLE IF NOT EXISTS responses (
    id TEXT PRIMARY KEY, record_id TEXT NOT NULL, user_id TEXT NOT NULL, status TEXT NOT NULL,
    answers TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS responses_by_record ON responses (record_id);
CREATE TABLE IF NOT EXISTS suggestions (
    record_id TEXT NOT NULL, question TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (record_id, question));
CREATE TABLE IF NOT EXISTS vectors (
    record_id TEXT NOT NULL, settings_id TEXT NOT NULL, value BLOB NOT NULL, PRIMARY KEY (record_id, settings_id));
CREATE INDEX IF NOT EXISTS vectors_by_settings ON vectors (settings_id);
"""
_SCHEMA_READY: set[Path] = set()
_RECORD_COLUMNS = ("status", "external_id", "inserted_at", "updated_at")
_IN_DATASET = "record_id IN (SELECT id FROM records WHERE dataset_id = ?)"

# Han, Hiragana and Katakana characters are one token each, as in Elasticsearch's standard analyzer.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_TOKEN = re.compile(rf"[{_CJK}]|[^\W_{_CJK}]+")
_QUERY_PART = re.compile(r'(-?)"([^"]*)"|(\S+)')


@dataclass
class Doc:
    """One record as the engine sees it: what filters, sorting and text search read."""

    id: str
    external_id: str | None
    status: str | None
    inserted_at: str | None
    updated_at: str | None
    fields: dict[str, Any]
    metadata: dict[str, Any]
    suggestions: dict[str, dict[str, Any]] = field(default_factory=dict)
    responses: list[dict[str, Any]] = field(default_factory=list)


@SearchEngine.register(engine_name=ENGINE_NAME)
class SQLiteSearchEngine(SearchEngine):
    """The server makes one instance per request; all state is in the SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # IMMEDIATE: a writer takes the lock up front, so the server and the worker queue on busy_timeout.
        self.db = sqlite3.connect(path, timeout=30, isolation_level="IMMEDIATE", check_same_thread=False)
        if path not in _SCHEMA_READY:  # once per process: the server makes an engine per request
            self.db.execute("PRAGMA journal_mode=WAL")  # readers never block the other process's writer
            self.db.executescript(_SCHEMA)
            _SCHEMA_READY.add(path)

    @classmethod
    async def new_instance(cls) -> SQLiteSearchEngine:
        return cls(Path(settings.home_path) / INDEX_FILE)

    async def close(self) -> None:
        self.db.close()

    async def ping(self) -> bool:
        return self.db.execute("SELECT 1").fetchone() == (1,)

    async def info(self) -> dict:
        return {"engine": ENGINE_NAME, "path": str(self.path), "sqlite_version": sqlite3.sqlite_version}

    # ----- index maintenance -----

    async def create_index(self, dataset: Dataset) -> None:
        pass  # tables are shared by all datasets

    async def delete_index(self, dataset: Dataset) -> None:
        with self.db:
            for table in ("responses", "suggestions", "vectors"):
                self.db.execute(f"DELETE FROM {table} WHERE {_IN_DATASET}", (str(dataset.id),))
            self.db.execute("DELETE FROM records WHERE dataset_id = ?", (str(dataset.id),))

    async def configure_metadata_property(self, dataset: Dataset, metadata_property: MetadataProperty) -> None:
        pass  # all metadata is stored; filters name the property they need

    async def index_records(self, dataset: Dataset, records: Iterable[Record]) -> None:
        images = {f.name for f in dataset.fields if f.is_image}  # Elasticsearch does not keep them either
        with self.db:
            for record in records:
                self._write_record(record, images)

    def _write_record(self, record: Record, images: set[str]) -> None:
        rid = str(record.id)
        fields = {name: value for name, value in (record.fields or {}).items() if name not in images}
        # Upsert rather than replace: the rowid, our insertion order, stays put.
        self.db.execute(
            """INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET
               external_id = excluded.external_id, status = excluded.status, inserted_at = excluded.inserted_at,
               updated_at = excluded.updated_at, fields = excluded.fields, metadata = excluded.metadata""",
            (rid, str(record.dataset_id), record.external_id, _str(record.status), _iso(record.inserted_at),
             _iso(record.updated_at), _dumps(fields), _dumps(record.metadata_ or {})),
        )
        for table in ("responses", "suggestions", "vectors"):
            self.db.execute(f"DELETE FROM {table} WHERE record_id = ?", (rid,))
        for response in record.responses:
            self._write_response(response)
        for suggestion in record.suggestions:
            self._write_suggestion(suggestion)
        self.db.executemany(
            "INSERT INTO vectors VALUES (?, ?, ?)",
            [(rid, str(v.vector_settings_id), np.asarray(v.value, np.float32).tobytes()) for v in record.vectors],
        )

    def _write_response(self, response: Response) -> None:
        answers = {question: (answer or {}).get("value") for question, answer in (response.values or {}).items()}
        self.db.execute(
            "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?)",
            (str(response.id), str(response.record_id), str(response.user_id), _str(response.status), _dumps(answers)),
        )

    def _write_suggestion(self, suggestion: Suggestion) -> None:
        body = {"value": suggestion.value, "score": suggestion.score, "agent": suggestion.agent,
                "type": _str(suggestion.type)}
        self.db.execute(
            "INSERT OR REPLACE INTO suggestions VALUES (?, ?, ?)",
            (str(suggestion.record_id), suggestion.question.name, _dumps(body)),
        )

    async def partial_record_update(self, record: Record, **update: Any) -> None:
        unknown = set(update) - set(_RECORD_COLUMNS)
        if unknown:
            raise ValueError(f"sqlite search engine cannot partially update {sorted(unknown)}")
        if update:
            assignments = ", ".join(f"{column} = ?" for column in update)
            values = [_iso(v) if isinstance(v, datetime) else _str(v) for v in update.values()]
            with self.db:
                self.db.execute(f"UPDATE records SET {assignments} WHERE id = ?", (*values, str(record.id)))

    async def delete_records(self, dataset: Dataset, records: Iterable[Record]) -> None:
        ids = [(str(record.id),) for record in records]
        with self.db:
            for table in ("responses", "suggestions", "vectors"):
                self.db.executemany(f"DELETE FROM {table} WHERE record_id = ?", ids)
            self.db.executemany("DELETE FROM records WHERE id = ?", ids)

    async def update_record_response(self, response: Response) -> None:
        with self.db:
            self._write_response(response)

    async def delete_record_response(self, response: Response) -> None:
        with self.db:
            self.db.execute("DELETE FROM responses WHERE id = ?", (str(response.id),))

    async def update_record_suggestion(self, suggestion: Suggestion) -> None:
        with self.db:
            self._write_suggestion(suggestion)

    async def delete_record_suggestion(self, suggestion: Suggestion) -> None:
        with self.db:
            self.db.execute(
                "DELETE FROM suggestions WHERE record_id = ? AND question = ?",
                (str(suggestion.record_id), suggestion.question.name),
            )

    # ----- progress and metrics -----

    async def get_dataset_progress(self, dataset: Dataset) -> dict:
        if dataset.is_draft:
            return {}
        rows = self.db.execute(
            "SELECT status, COUNT(*) FROM records WHERE dataset_id = ? GROUP BY status", (str(dataset.id),)
        ).fetchall()
        return {"total": sum(count for _, count in rows), **dict(rows)}

    async def get_dataset_user_progress(self, dataset: Dataset, user: User) -> dict:
        if dataset.is_draft:
            return {}
        rows = self.db.execute(
            f"SELECT status, COUNT(*) FROM responses WHERE user_id = ? AND {_IN_DATASET} GROUP BY status",
            (str(user.id), str(dataset.id)),
        ).fetchall()
        return {"total": sum(count for _, count in rows), **dict(rows)}

    async def compute_metrics_for(self, metadata_property: MetadataProperty) -> MetadataMetrics:
        dataset_id = str(metadata_property.dataset_id)
        rows = self.db.execute("SELECT metadata FROM records WHERE dataset_id = ?", (dataset_id,))
        per_record = [_flatten(json.loads(metadata).get(metadata_property.name)) for (metadata,) in rows]
        if metadata_property.type == MetadataPropertyType.terms:
            counts = Counter(term for values in per_record for term in {_term(v) for v in values})
            return TermsMetrics(
                total=sum(len(values) for values in per_record),
                values=[TermsMetrics.TermCount(term=t, count=c) for t, c in counts.most_common()],
            )
        numbers = [v for values in per_record for v in values if _is_number(v)]
        if metadata_property.type == MetadataPropertyType.integer:
            return IntegerMetadataMetrics(min=min(numbers, default=None), max=max(numbers, default=None))
        return FloatMetadataMetrics(min=min(numbers, default=None), max=max(numbers, default=None))

    # ----- search -----

    async def search(
        self,
        dataset: Dataset,
        query: TextQuery | str | None = None,
        filter: Filter | None = None,
        sort: list[Order] | None = None,
        offset: int = 0,
        limit: int = 100,
        user_id: Any = None,  # the server passes it (the base class omits it): it seeds a per-user shuffle
    ) -> SearchResponses:
        docs = self._matching_docs(str(dataset.id), filter)
        scores = _text_scores(docs, query) if query else {doc.id: 1.0 for doc in docs}
        docs = [doc for doc in docs if doc.id in scores]
        if sort:
            docs = _sorted(docs, sort)
            page = [SearchResponseItem(record_id=doc.id) for doc in docs[offset : offset + limit]]
            return SearchResponses(items=page, total=len(docs))
        if user_id:  # like Elasticsearch's random_score: each annotator sees the queue in their own order
            scores = {rid: score * _shuffle_weight(user_id, rid) for rid, score in scores.items()}
        docs = sorted(docs, key=lambda doc: -scores[doc.id])  # stable: ties keep insertion order
        page = [SearchResponseItem(record_id=doc.id, score=scores[doc.id]) for doc in docs[offset : offset + limit]]
        return SearchResponses(items=page, total=len(docs))

    async def similarity_search(
        self,
        dataset: Dataset,
        vector_settings: VectorSettings,
        value: list[float] | None = None,
        record: Record | None = None,
        query: TextQuery | str | None = None,
        filter: Filter | None = None,
        max_results: int = 100,
        order: SimilarityOrder = SimilarityOrder.most_similar,
        threshold: float | None = None,
    ) -> SearchResponses:
        if bool(value) == bool(record):
            raise ValueError("Must provide either vector value or record to compute the similarity search")
        excluded = str(record.id) if record else None
        value = value or record.vector_value_by_vector_settings(vector_settings)
        if not value:
            raise ValueError("Cannot find a vector value to apply with provided info")

        ids, scores = self._cosine_scores(str(vector_settings.id), value, order)
        allowed = None
        if filter or query:
            docs = self._matching_docs(str(dataset.id), filter)
            allowed = set(_text_scores(docs, query)) if query else {doc.id for doc in docs}
        ranked = [
            (rid, score) for score, rid in sorted(zip(scores, ids), reverse=True)
            if rid != excluded and (allowed is None or rid in allowed)
        ][:max_results]
        total = len(ranked)  # as Elasticsearch's knn: hits before the threshold
        if threshold is not None:
            ranked = [(rid, score) for rid, score in ranked if score >= threshold]
        return SearchResponses(items=[SearchResponseItem(record_id=rid, score=s) for rid, s in ranked], total=total)

    def _cosine_scores(self, settings_id: str, value: list[float], order: SimilarityOrder) -> tuple[list[str], list]:
        rows = self.db.execute("SELECT record_id, value FROM vectors WHERE settings_id = ?", (settings_id,)).fetchall()
        if not rows:
            return [], []
        matrix = np.stack([np.frombuffer(blob, np.float32) for _, blob in rows])
        target = np.asarray(value, np.float32)
        if order == SimilarityOrder.least_similar:
            target = -target
        norms = np.linalg.norm(matrix, axis=1) * np.linalg.norm(target)
        cosine = matrix @ target / np.where(norms == 0, 1, norms)
        # Elasticsearch's cosine score, (1 + cos) / 2, so thresholds mean the same on both engines.
        return [rid for rid, _ in rows], ((1 + cosine) / 2).tolist()

    def _matching_docs(self, dataset_id: str, filter: Filter | None) -> list[Doc]:
        docs = self._load_docs(dataset_id)
        return [doc for doc in docs if _matches(doc, filter)] if filter else docs

    def _load_docs(self, dataset_id: str) -> list[Doc]:
        rows = self.db.execute(
            "SELECT id, external_id, status, inserted_at, updated_at, fields, metadata FROM records "
            "WHERE dataset_id = ? ORDER BY rowid",
            (dataset_id,),
        )
        docs = {row[0]: Doc(*row[:5], fields=json.loads(row[5]), metadata=json.loads(row[6])) for row in rows}
        for rid, question, body in self.db.execute(
            f"SELECT record_id, question, body FROM suggestions WHERE {_IN_DATASET}", (dataset_id,)
        ):
            docs[rid].suggestions[question] = json.loads(body)
        for rid, user_id, status, answers in self.db.execute(
            f"SELECT record_id, user_id, status, answers FROM responses WHERE {_IN_DATASET}", (dataset_id,)
        ):
            docs[rid].responses.append({"user_id": user_id, "status": status, "answers": json.loads(answers)})
        return list(docs.values())


# ----- filters -----


def _matches(doc: Doc, filter: Filter) -> bool:
    if isinstance(filter, AndFilter):
        return all(_matches(doc, f) for f in filter.filters)
    if isinstance(filter.scope, ResponseFilterScope):
        return _matches_responses(doc, filter)
    return _test(filter, _scope_values(doc, filter.scope))


def _matches_responses(doc: Doc, filter: TermsFilter | RangeFilter) -> bool:
    scope = filter.scope
    responses = _user_responses(doc, scope)
    if scope.question:
        return any(_test(filter, _flatten(r["answers"].get(scope.question))) for r in responses)
    if scope.property != "status" or not isinstance(filter, TermsFilter):
        raise ValueError(f"Cannot process filter scope {scope}")
    # "pending" means no response yet: from this user when the scope names one, from anybody otherwise.
    if "pending" in filter.values and not responses:
        return True
    return any(r["status"] in filter.values for r in responses)


def _user_responses(doc: Doc, scope: ResponseFilterScope) -> list[dict[str, Any]]:
    if scope.user is None:
        return doc.responses
    return [r for r in doc.responses if r["user_id"] == str(scope.user.id)]


def _scope_values(doc: Doc, scope: FilterScope) -> list:
    if isinstance(scope, MetadataFilterScope):
        return _flatten(doc.metadata.get(scope.metadata_property))
    if isinstance(scope, SuggestionFilterScope):
        return _flatten(doc.suggestions.get(scope.question, {}).get(scope.property or "value"))
    if isinstance(scope, RecordFilterScope):
        return _flatten(getattr(doc, scope.property))
    if isinstance(scope, ResponseFilterScope):
        name = scope.question
        responses = _user_responses(doc, scope)
        return [v for r in responses for v in _flatten(r["answers"].get(name) if name else r["status"])]
    raise ValueError(f"Cannot process search scope {scope}")


def _test(filter: TermsFilter | RangeFilter, values: list) -> bool:
    """Multi-valued fields match when any value does, as in Elasticsearch."""
    if isinstance(filter, TermsFilter):
        wanted = {str(v) for v in filter.values}
        return any(_term(v) in wanted for v in values)
    if isinstance(filter, RangeFilter):
        return any(_in_range(v, filter.ge, filter.le) for v in values)
    raise ValueError(f"Cannot process filter {filter}")


def _in_range(value: Any, ge: Any, le: Any) -> bool:
    value = _comparable(value)
    low = None if ge is None else _comparable(ge)
    high = None if le is None else _comparable(le)
    if low is not None and (type(low) is not type(value) or value < low):
        return False
    return high is None or (type(high) is type(value) and value <= high)


# ----- sorting -----


def _sorted(docs: list[Doc], sort: list[Order]) -> list[Doc]:
    """Stable sorts from the last key to the first; records without a value go last either way."""
    for order in reversed(sort):
        keyed = [(_sort_key(doc, order), doc) for doc in docs]
        present = [(key, doc) for key, doc in keyed if key is not None]
        present.sort(key=lambda pair: pair[0], reverse=order.order == SortOrder.desc)
        docs = [doc for _, doc in present] + [doc for key, doc in keyed if key is None]
    return docs


def _sort_key(doc: Doc, order: Order) -> tuple | None:
    values = [_comparable(v) for v in _scope_values(doc, order.scope)]
    if not values:
        return None
    numbers = [v for v in values if isinstance(v, float)]
    if numbers and isinstance(order.scope, ResponseFilterScope):
        return (0, sum(numbers) / len(numbers))  # several annotators: their average, as Elasticsearch
    if numbers:
        return (0, min(numbers) if order.order == SortOrder.asc else max(numbers))
    return (1, min(str(v) for v in values) if order.order == SortOrder.asc else max(str(v) for v in values))


# ----- text search -----


def _text_scores(docs: list[Doc], query: TextQuery | str) -> dict[str, float]:
    """Scores of the records that match every query part (AND, as the Elasticsearch engine asks).

    A part is a word (several tokens, as CJK text gives, must be adjacent), a "quoted phrase",
    a word* prefix, or a -word / -"phrase" that must not appear. Scoring is tf-idf.
    """
    query = TextQuery(q=query) if isinstance(query, str) else query
    texts = {doc.id: _tokens(_searchable_text(doc, query.field)) for doc in docs}
    required, excluded = _parse_query(query.q)
    counts = {rid: [_count(tokens, part) for part in required] for rid, tokens in texts.items()}
    idf = [1 + math.log(len(texts) / (1 + sum(1 for c in counts.values() if c[i]))) for i in range(len(required))]
    return {
        rid: sum(math.log1p(c) * w for c, w in zip(found, idf)) or 1.0
        for rid, found in counts.items()
        if all(found) and not any(_count(texts[rid], part) for part in excluded)
    }


def _parse_query(q: str) -> tuple[list[list[str]], list[list[str]]]:
    required, excluded = [], []
    for negated, phrase, word in _QUERY_PART.findall(q):
        if word.startswith("-") and len(word) > 1:
            negated, word = "-", word[1:]
        tokens = _tokens(phrase or word)
        if word.endswith("*") and tokens:
            tokens[-1] += "*"
        if tokens:
            (excluded if negated else required).append(tokens)
    return required, excluded


def _count(tokens: list[str], part: list[str]) -> int:
    """How often the token sequence `part` occurs; a last token ending in * matches as a prefix."""
    n, count = len(part), 0
    for i in range(len(tokens) - n + 1):
        if all(_token_matches(tokens[i + j], p) for j, p in enumerate(part)):
            count += 1
    return count


def _token_matches(token: str, pattern: str) -> bool:
    return token.startswith(pattern[:-1]) if pattern.endswith("*") else token == pattern


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def _searchable_text(doc: Doc, field_name: str | None) -> str:
    values = [doc.fields.get(field_name)] if field_name else list(doc.fields.values())
    parts = []
    for value in values:
        if isinstance(value, list):  # chat fields: a list of {role, content} messages
            parts += [str(m.get("content", "")) if isinstance(m, dict) else str(m) for m in value]
        elif value is not None:
            parts.append(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))
    return "\n".join(parts)


# ----- small helpers -----


def _shuffle_weight(user_id: Any, record_id: str) -> float:
    digest = hashlib.blake2b(f"{user_id}:{record_id}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") + 1) / 2**64


def _flatten(value: Any) -> list:
    if value is None:
        return []
    return [v for item in value for v in _flatten(item)] if isinstance(value, list) else [value]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _term(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _comparable(value: Any) -> float | str:
    """Numbers as floats, ISO dates as UTC timestamps, anything else as text."""
    if _is_number(value):
        return float(value)
    text = str(value)
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)
