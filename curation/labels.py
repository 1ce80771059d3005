"""Human answers coming back from annotation: an append-only response log and the verified labels.

    <run_dir>/annotations/responses/part-NNNNN.parquet  every answer ever harvested (append-only)
    <run_dir>/annotations/verified.parquet              one row per answered record: its label and why

Nothing an annotator submitted is lost or overwritten: a changed answer is a new row (a later
`updated_at`) and the latest answer of each annotator counts. A record's label is the majority of its
submitted answers when they agree enough; ties and weak majorities are conflicts, and labels the
student contradicts with confidence (confident learning) are likely errors unless enough annotators
confirmed them. Conflicts and likely errors are disputed: they go back for more answers and do not
train the student until resolved.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curation.config import AnnotationConfig
from curation.shards import write_parquet

ANNOTATIONS_DIR = "annotations"
RESPONSE_SCHEMA = pa.schema([("id", pa.string()), ("dataset", pa.string()), ("annotator", pa.string()),
                             ("status", pa.string()), ("label", pa.string()),
                             ("updated_at", pa.timestamp("us", tz="UTC"))])
VERIFIED_SCHEMA = pa.schema([("id", pa.string()), ("label", pa.string()), ("status", pa.string()),
                             ("votes", pa.string()), ("answers", pa.int32()), ("agreement", pa.float32()),
                             ("annotators", pa.list_(pa.string())), ("student_label", pa.string()),
                             ("student_score", pa.float32())])
DISPUTED = ("conflict", "likely_error")


def annotations_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / ANNOTATIONS_DIR


def verified_path(run_dir: str | Path) -> Path:
    return annotations_dir(run_dir) / "verified.parquet"


def read_responses(run_dir: str | Path) -> pa.Table:
    parts = sorted((annotations_dir(run_dir) / "responses").glob("part-*.parquet"))
    return pa.concat_tables([pq.read_table(p) for p in parts]) if parts else RESPONSE_SCHEMA.empty_table()


def append_responses(run_dir: str | Path, table: pa.Table) -> int:
    """Adds the answers not yet in the log and returns how many were new (0 when harvested twice)."""
    def key(row: dict) -> tuple:
        return tuple(row[name] for name in RESPONSE_SCHEMA.names)

    seen = {key(row) for row in read_responses(run_dir).to_pylist()}
    new = [row for row in table.cast(RESPONSE_SCHEMA).to_pylist() if key(row) not in seen]
    if new:
        folder = annotations_dir(run_dir) / "responses"
        number = len(list(folder.glob("part-*.parquet"))) if folder.exists() else 0
        write_parquet(folder / f"part-{number:05d}.parquet", pa.Table.from_pylist(new, RESPONSE_SCHEMA), len(new))
    return len(new)


def check_responses(table: pa.Table, labels: list[str], known_ids: set[str]) -> tuple[pa.Table, list[dict]]:
    """Answers fit to count, and the others with the reason they cannot count (kept in the log)."""
    valid, quarantined = [], []
    for row in table.to_pylist():
        reason = ("unknown_record" if row["id"] not in known_ids
                  else "missing_label" if row["status"] == "submitted" and row["label"] is None
                  else "unknown_label" if row["status"] == "submitted" and row["label"] not in labels
                  else "unknown_status" if row["status"] not in ("submitted", "discarded", "draft")
                  else None)
        (quarantined if reason else valid).append({**row, "reason": reason} if reason else row)
    return pa.Table.from_pylist(valid, RESPONSE_SCHEMA), quarantined


def latest_answers(responses: pa.Table) -> dict[str, dict[str, dict]]:
    """record id -> annotator -> their latest submitted or discarded answer (drafts do not count)."""
    latest: dict[str, dict[str, dict]] = {}
    for row in sorted(responses.to_pylist(), key=lambda r: r["updated_at"]):
        if row["status"] in ("submitted", "discarded"):
            latest.setdefault(row["id"], {})[row["annotator"]] = row
    return latest


def resolve(responses: pa.Table, config: AnnotationConfig, student: dict[str, dict[str, float]]) -> pa.Table:
    """One row per answered record. `student`: record id -> the student's probability per label."""
    latest = latest_answers(responses)
    thresholds = _class_thresholds(latest, student)
    rows = []
    for record_id, answers in sorted(latest.items()):
        votes = Counter(a["label"] for a in answers.values() if a["status"] == "submitted")
        probs = student.get(record_id, {})
        guess = max(probs, key=probs.get) if probs else None
        row = {"id": record_id, "votes": json.dumps(dict(votes), ensure_ascii=False), "answers": len(answers),
               "annotators": sorted(answers), "student_label": guess,
               "student_score": probs.get(guess) if guess else None, "label": None, "agreement": None}
        if not votes:
            rows.append({**row, "status": "discarded"})
            continue
        (top, count), *rest = votes.most_common()
        agreement = count / sum(votes.values())
        row["agreement"] = agreement
        if (rest and rest[0][1] == count) or agreement < config.min_agreement:
            rows.append({**row, "status": "conflict"})
        elif sum(votes.values()) < config.review_min_submitted and _contradicted(top, probs, thresholds):
            rows.append({**row, "status": "likely_error"})
        else:
            rows.append({**row, "label": top, "status": "verified"})
    return pa.Table.from_pylist(rows, VERIFIED_SCHEMA)


def _class_thresholds(latest: dict[str, dict[str, dict]], student: dict[str, dict[str, float]]) -> dict[str, float]:
    """Confident learning: per label, the student's mean probability for it over records humans gave it."""
    given: dict[str, list[float]] = {}
    for record_id, answers in latest.items():
        for answer in answers.values():
            if answer["status"] == "submitted" and record_id in student:
                given.setdefault(answer["label"], []).append(student[record_id].get(answer["label"], 0.0))
    return {label: float(np.mean(p)) for label, p in given.items() if len(p) >= 5}  # fewer: too noisy to judge


def _contradicted(label: str, probs: dict[str, float], thresholds: dict[str, float]) -> bool:
    """The student is below the human label's threshold and confidently prefers another label."""
    if label not in thresholds or not probs or probs.get(label, 0.0) >= thresholds[label]:
        return False
    other = max((k for k in probs if k != label), key=probs.get, default=None)
    return other in thresholds and probs[other] >= thresholds[other] and probs[other] > probs.get(label, 0.0)


def write_verified(run_dir: str | Path, table: pa.Table) -> Path:
    write_parquet(verified_path(run_dir), table, max(len(table), 1))
    return verified_path(run_dir)


def verified_labels(run_dir: str | Path) -> dict[str, str]:
    """record id -> label, for the records whose answers resolved to a verified label."""
    path = verified_path(run_dir)
    if not path.exists():
        return {}
    table = pq.read_table(path, columns=["id", "label", "status"]).to_pylist()
    return {r["id"]: r["label"] for r in table if r["status"] == "verified"}


def answered_share(run_dir: str | Path, ids: list[str]) -> float:
    """The share of `ids` with a resolved answer (verified or discarded)."""
    path = verified_path(run_dir)
    if not ids or not path.exists():
        return 0.0
    done = {r["id"] for r in pq.read_table(path, columns=["id", "status"]).to_pylist()
            if r["status"] in ("verified", "discarded")}
    return len(done & set(ids)) / len(ids)
