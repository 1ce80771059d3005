"""Selected batches to Argilla: one dataset per task, records keyed by the pipeline's stable ids.

A record is upserted by its id, so pushing a batch twice creates no duplicates and a push cut off
by a server restart is simply resumed (each chunk is retried until the server is back). Pushing
never sends responses, so what annotators answered is never touched.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import argilla as rg
import httpx
import pyarrow as pa
from argilla._exceptions import ArgillaAPIError  # what the SDK raises for HTTP errors; no public alias

from curation.config import AnnotationConfig, ConfigError, env_secret

log = logging.getLogger(__name__)
T = TypeVar("T")
QUESTION = "label"
VECTOR = "embedding"
RETRY_SECONDS = 180


def connect(config: AnnotationConfig, api_key: str | None = None) -> rg.Argilla:
    """A client for the configured server; the key is passed in (a flow read it from a Prefect Secret)
    or read from the environment variable `api_key` names. It is never logged."""
    api_key = api_key or env_secret(config.api_key, "annotation.api_key")
    return rg.Argilla(api_url=config.url(), api_key=api_key, timeout=60)


def retrying(call: Callable[[], T], what: str, seconds: float = RETRY_SECONDS) -> T:
    """`call()`, retried with backoff while the server is unreachable or restarting."""
    deadline, wait = time.monotonic() + seconds, 1.0
    while True:
        try:
            return call()
        except (httpx.TransportError, httpx.HTTPStatusError, ArgillaAPIError) as error:
            status = error.response.status_code if isinstance(error, httpx.HTTPStatusError) \
                else getattr(error, "status_code", None)
            if (status is not None and status < 500) or time.monotonic() > deadline:
                raise
            log.warning("%s: server unavailable (%s), retrying in %.0f s", what, type(error).__name__, wait)
            time.sleep(wait)
            wait = min(wait * 2, 15.0)


def dataset_settings(config: AnnotationConfig, labels: list[str], dimensions: int, min_submitted: int) -> rg.Settings:
    return rg.Settings(
        guidelines=config.guidelines,
        fields=[rg.TextField(name="text", title="Text", use_markdown=False)],
        questions=[rg.LabelQuestion(name=QUESTION, title="Label", labels=labels)],
        metadata=[rg.TermsMetadataProperty("language"), rg.IntegerMetadataProperty("cluster"),
                  rg.FloatMetadataProperty("uncertainty"), rg.TermsMetadataProperty("strategy"),
                  rg.TermsMetadataProperty("source"), rg.IntegerMetadataProperty("round"),
                  rg.TermsMetadataProperty("votes")],
        vectors=[rg.VectorField(VECTOR, dimensions=dimensions)],
        distribution=rg.TaskDistribution(min_submitted=min_submitted),
    )


def ensure_dataset(client: rg.Argilla, config: AnnotationConfig, name: str, labels: list[str], dimensions: int,
                   min_submitted: int) -> rg.Dataset:
    """The task's dataset, created on first use; an existing one must ask for the same labels."""
    workspace = client.workspaces(config.workspace)
    if workspace is None:
        workspace = rg.Workspace(name=config.workspace, client=client).create()
    dataset = client.datasets(name=name, workspace=workspace)
    if dataset is None:
        settings = dataset_settings(config, labels, dimensions, min_submitted)
        return rg.Dataset(name=name, workspace=workspace, settings=settings, client=client).create()
    existing = list(dataset.settings.questions[QUESTION].labels)
    if sorted(existing) != sorted(labels):
        raise ConfigError(f"Argilla dataset {name!r} asks for labels {existing}, the pipeline has {labels}")
    return dataset


def batch_labels(config: AnnotationConfig, batch: pa.Table) -> list[str]:
    """The label set: configured, or the classes the student scored the batch with."""
    if config.labels:
        return list(config.labels)
    classes = sorted({label for probs in batch.column("probabilities").to_pylist() if probs for label, _ in probs})
    if not classes:
        raise ConfigError("no student has scored this batch yet (cold start): set annotation.labels")
    return classes


def to_records(rows: list[dict], agent: str) -> list[rg.Record]:
    """Argilla records with the student's suggestion (score = its calibrated probability)."""
    return [rg.Record(
        id=row["id"], fields={"text": row["text"]},
        metadata={key: value for key, value in {
            "language": row["lang"], "cluster": row["cluster"], "uncertainty": row["score"],
            "strategy": row["strategy"], "source": row["source"], "round": row["round"],
            "votes": row.get("votes")}.items() if value is not None},
        vectors={VECTOR: row["vector"]},
        suggestions=[rg.Suggestion(QUESTION, row["suggestion"], score=row["suggestion_score"], agent=agent)]
        if row["suggestion"] else [],
    ) for row in rows]


def chunks(rows: list[dict], size: int) -> Iterator[list[dict]]:
    for first in range(0, len(rows), size):
        yield rows[first:first + size]


def upsert(client: rg.Argilla, dataset: rg.Dataset, records: list[rg.Record]) -> None:
    """The SDK's bulk upsert without its reply parsing: argilla 2.8's `records.log` crashes on records
    that already hold a discarded answer (a response without values)."""
    for record in records:
        record.dataset = dataset
    body = {"items": [record.api_model().model_dump(mode="json") for record in records]}
    client.http_client.put(f"/api/v1/datasets/{dataset.id}/records/bulk", json=body).raise_for_status()


def push_rows(client: rg.Argilla, dataset: rg.Dataset, rows: list[dict], agent: str, chunk: int) -> int:
    for part in chunks(rows, chunk):
        records = to_records(part, agent)
        retrying(lambda records=records: upsert(client, dataset, records), f"push to {dataset.name}")
    return len(rows)


def push_batch(client: rg.Argilla, config: AnnotationConfig, batch: pa.Table, agent: str) -> dict:
    """Push one round's batch; returns what the dataset holds of it afterwards."""
    rows = batch.to_pylist()
    if not rows:
        return {"dataset": config.dataset, "pushed": 0, "on_server": 0}
    dataset = retrying(lambda: ensure_dataset(client, config, config.dataset, batch_labels(config, batch),
                                              len(rows[0]["vector"]), config.min_submitted), "dataset")
    push_rows(client, dataset, rows, agent, config.push_chunk)
    present = set(server_records(client, dataset)) & {row["id"] for row in rows}
    return {"dataset": config.dataset, "pushed": len(rows), "on_server": len(present)}


def server_records(client: rg.Argilla, dataset: rg.Dataset, include: str = "") -> dict[str, dict]:
    """Every record of the dataset straight from the server's database (not its search index), by id."""
    records, offset, page = {}, 0, 1000
    while True:
        params = {"offset": offset, "limit": page, **({"include": include} if include else {})}
        response = retrying(lambda params=params: client.http_client.get(
            f"/api/v1/datasets/{dataset.id}/records", params=params), "list records")
        response.raise_for_status()
        items = response.json()["items"]
        records.update({item["external_id"]: item for item in items})
        if len(items) < page:
            return records
        offset += page
