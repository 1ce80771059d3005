"""Verified labels back from Argilla: every answer into the append-only log, then resolved.

Answers are read from the server's database listing (with their annotators and timestamps), not
from its search index. Disputed records (conflicts, likely label errors) are sent to the review
dataset, which asks for more answers; their answers there join the same record's votes.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime

import argilla as rg
import pyarrow as pa

from annotators.push import QUESTION, batch_labels, ensure_dataset, push_rows, retrying, server_records
from curation.config import CurateConfig
from curation.labels import (
    DISPUTED,
    RESPONSE_SCHEMA,
    annotations_dir,
    append_responses,
    check_responses,
    read_responses,
    resolve,
    write_verified,
)
from curation.shards import atomic_write_json, write_parquet


def review_name(config: CurateConfig) -> str:
    return f"{config.annotation.dataset}-review"


def fetch_responses(client: rg.Argilla, dataset: rg.Dataset) -> pa.Table:
    """Every answer on the dataset: record id, annotator, status, label, last update."""
    usernames = {str(user.id): user.username for user in client.users}
    rows = []
    for record_id, record in server_records(client, dataset, include="responses").items():
        for response in record.get("responses") or []:
            value = ((response.get("values") or {}).get(QUESTION) or {}).get("value")
            rows.append({"id": record_id, "dataset": dataset.name, "status": response["status"],
                         "annotator": usernames.get(response["user_id"], response["user_id"]),
                         "label": value if value is None else str(value),
                         "updated_at": datetime.fromisoformat(response["updated_at"])})
    return pa.Table.from_pylist(rows, RESPONSE_SCHEMA)


def harvest(client: rg.Argilla, config: CurateConfig, batches: pa.Table) -> dict:
    """Pull, log, resolve and send disputes back; `batches` = every batch pushed so far."""
    annotation, run_dir = config.annotation, config.run_dir
    labels = batch_labels(annotation, batches)
    new = 0
    for name in (annotation.dataset, review_name(config)):
        dataset = retrying(lambda name=name: client.datasets(name=name, workspace=annotation.workspace), name)
        if dataset is not None:
            new += append_responses(run_dir, fetch_responses(client, dataset))
    responses = read_responses(run_dir)
    valid, quarantined = check_responses(responses, labels, set(batches.column("id").to_pylist()))
    rows = {row["id"]: row for row in batches.to_pylist()}
    student = {i: dict(row["probabilities"]) for i, row in rows.items() if row["probabilities"]}
    verified = resolve(valid, annotation, student)
    write_verified(run_dir, verified)
    write_parquet(annotations_dir(run_dir) / "quarantine.parquet",
                  pa.Table.from_pylist(quarantined, RESPONSE_SCHEMA.append(pa.field("reason", pa.string()))),
                  max(len(quarantined), 1))
    disputed = [{**rows[r["id"]], "votes": r["votes"]} for r in verified.to_pylist() if r["status"] in DISPUTED]
    if disputed:
        review = ensure_dataset(client, annotation, review_name(config), labels, len(disputed[0]["vector"]),
                                annotation.review_min_submitted)
        push_rows(client, review, disputed, "pipeline-review", annotation.push_chunk)
    stats = summarise(responses, quarantined, verified, rows, new)
    atomic_write_json(annotations_dir(run_dir) / "stats.json", stats)
    return stats


def summarise(responses: pa.Table, quarantined: list[dict], verified: pa.Table, batch_rows: dict, new: int) -> dict:
    """Answers in = counted + quarantined (by reason); records by outcome, per language; agreement."""
    records = verified.to_pylist()
    per_language: dict[str, Counter] = {}
    for r in records:
        per_language.setdefault(batch_rows.get(r["id"], {}).get("lang", "und"), Counter())[r["status"]] += 1
    agreements = [r["agreement"] for r in records if r["answers"] > 1 and r["agreement"] is not None]
    return {"answers": len(responses), "new_answers": new, "counted": len(responses) - len(quarantined),
            "quarantined": dict(Counter(q["reason"] for q in quarantined)),
            "records": dict(Counter(r["status"] for r in records)), "pushed": len(batch_rows),
            "awaiting": len(batch_rows) - len(records),
            "per_language": {lang: dict(counts) for lang, counts in per_language.items()},
            "mean_agreement": sum(agreements) / len(agreements) if agreements else None}
