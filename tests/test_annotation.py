"""Batches to a real local Argilla and verified labels back: push with suggestions, answer as two
annotators through the same HTTP API the UI uses, harvest, resolve, restart the server mid-push."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import argilla as rg
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import sib_rows, write_config, write_jsonl

from annotators.harvest import harvest, review_name
from annotators.local_server import LocalArgilla
from annotators.push import connect, push_batch, server_records
from curation.active import BATCH_SCHEMA, load_pool, read_batches, round_dir, select_round, train_round
from curation.config import AnnotationConfig, ConfigError, ExportConfig, load_config
from curation.labels import RESPONSE_SCHEMA, check_responses, read_responses, resolve
from curation.pipeline import LocalExecutor, run_pipeline

pytestmark = pytest.mark.slow
VARIETIES = ["eng_Latn", "fra_Latn", "swh_Latn", "zho_Hans"]


@pytest.fixture(scope="module")
def owner_env(local_argilla: dict):
    """The owner's key in the environment, as production would set ARGILLA_API_KEY."""
    key = LocalArgilla(Path(local_argilla["home"])).credentials("owner")["api_key"]
    saved = {name: os.environ.get(name) for name in ("ARGILLA_API_URL", "ARGILLA_API_KEY")}
    os.environ.update(ARGILLA_API_URL=local_argilla["url"], ARGILLA_API_KEY=key)
    yield key
    for name, value in saved.items():
        os.environ.pop(name) if value is None else os.environ.__setitem__(name, value)


@pytest.fixture(scope="module")
def curated(tmp_path_factory, owner_env) -> Path:
    """A curated SIB-200 run (8 labels per language) and round 0's batch of 30."""
    folder = tmp_path_factory.mktemp("annotate")
    rows = [{"id": f"{v}/{r['index_id']}", "text": r["text"], "label": r["category"] if i < 8 else None}
            for v in VARIETIES for i, r in enumerate(sib_rows(v, "train", 40))]
    write_jsonl(folder / "in.jsonl", rows)
    config = load_config(write_config(folder, shard_rows=80, sources=[
        {"name": "sib", "path": str(folder / "in.jsonl"), "id_column": "id", "label_column": "label"}],
        embed={"enabled": True}, coverage={"enabled": True}, semdedup={"enabled": True},
        active_learning={"selection": {"batch_size": 30}},
        annotation={"dataset": "sib-topics", "labels": sorted(set(gold().values()))}))
    run_pipeline(config, LocalExecutor(config, progress=False))
    train_round(config, 0)
    select_round(config, 0)
    return folder / "config.yaml"


def gold() -> dict[str, str]:
    """The SIB-200 category of every source id (the oracle the annotators answer with)."""
    return {f"{v}/{r['index_id']}": r["category"] for v in VARIETIES for r in sib_rows(v, "train", 40)}


def gold_of(config, ids: list[str]) -> list[str]:
    """The SIB-200 category of each pipeline record id, found through its source key."""
    source_key = {r["id"]: r["source_key"] for p in sorted((Path(config.run_dir) / "semdedup").glob("part-*.parquet"))
                  for r in pq.read_table(p, columns=["id", "source_key"]).to_pylist()}
    truth = gold()
    return [truth[source_key[i]] for i in ids]


def annotator(info: dict, username: str) -> rg.Argilla:
    key = LocalArgilla(Path(info["home"])).credentials(username)["api_key"]
    return rg.Argilla(api_url=info["url"], api_key=key)


def answer(client: rg.Argilla, record_uuid: str, label: str | None, status: str = "submitted") -> dict:
    """An annotator's answer through the server's HTTP API, as the web UI sends it."""
    body = {"status": status, "values": {"label": {"value": label}} if label else None}
    response = client.http_client.post(f"/api/v1/records/{record_uuid}/responses", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def test_push_twice_creates_no_duplicates_and_carries_suggestions(curated, local_argilla):
    config = load_config(curated)
    batch = pq.read_table(round_dir(config, 0) / "batch.parquet")
    client = connect(config.annotation)
    first = push_batch(client, config.annotation, batch, agent="student-round-0000")
    second = push_batch(client, config.annotation, batch, agent="student-round-0000")
    assert first == second == {"dataset": "sib-topics", "pushed": 30, "on_server": 30}
    dataset = client.datasets(name="sib-topics", workspace="curation")
    records = list(dataset.records(with_suggestions=True, with_vectors=True))
    assert len(records) == 30 and {r.id for r in records} == set(batch.column("id").to_pylist())
    suggestion = records[0].suggestions["label"]
    assert suggestion.agent == "student-round-0000" and 0 < suggestion.score <= 1
    assert suggestion.value in dataset.settings.questions["label"].labels
    assert set(records[0].metadata) >= {"language", "cluster", "uncertainty", "strategy", "source", "round"}
    assert len(records[0].vectors["embedding"]) == 384
    assert not dataset.settings.fields["text"].use_markdown


def test_answers_become_verified_labels_and_nothing_is_lost(curated, local_argilla):
    config = load_config(curated)
    client = connect(config.annotation)
    push_batch(client, config.annotation, read_batches(config), "student-round-0000")
    dataset = client.datasets(name="sib-topics", workspace="curation")
    uuid = {i: record["id"] for i, record in server_records(client, dataset).items()}
    ids = read_batches(config).column("id").to_pylist()
    label = gold_of(config, ids)
    wrong = [next(c for c in config.annotation.labels if c != y) for y in label]
    first, second = annotator(local_argilla, "annotator"), annotator(local_argilla, "annotator2")
    for k in range(12):  # the first annotator answers twelve; the second agrees on four, contradicts one
        answer(first, uuid[ids[k]], label[k])
    for k in range(4):
        answer(second, uuid[ids[k]], label[k])
    answer(second, uuid[ids[4]], wrong[4])
    answer(first, uuid[ids[12]], None, status="discarded")
    mistaken = answer(first, uuid[ids[13]], wrong[13])
    dataset.records.log([rg.Record(id="not-from-the-pipeline", fields={"text": "added by hand in the UI"})])
    answer(first, server_records(client, dataset)["not-from-the-pipeline"]["id"], label[0])

    before = int(load_pool(config).labeled.sum())
    stats = harvest(client, config, read_batches(config))
    assert stats["answers"] == stats["new_answers"] == 12 + 5 + 1 + 1 + 1
    assert stats["answers"] == stats["counted"] + sum(stats["quarantined"].values())
    assert stats["quarantined"] == {"unknown_record": 1}
    records = stats["records"]  # single answers the student contradicts with confidence are likely errors
    assert (records.get("verified", 0) + records.get("likely_error", 0), records["conflict"], records["discarded"]) \
        == (12, 1, 1)
    assert stats["awaiting"] == 30 - 14 and stats["mean_agreement"] == pytest.approx((4 * 1.0 + 0.5) / 5)
    assert int(load_pool(config).labeled.sum()) == before + records["verified"]

    time.sleep(1.1)  # the correction gets a later timestamp
    first.http_client.put(f"/api/v1/responses/{mistaken['id']}",
                          json={"status": "submitted", "values": {"label": {"value": label[13]}}}).raise_for_status()
    again = harvest(client, config, read_batches(config))
    assert again["new_answers"] == 1 and again["records"] == stats["records"]
    history = sorted((r for r in read_responses(config.run_dir).to_pylist() if r["id"] == ids[13]),
                     key=lambda r: r["updated_at"])
    assert [r["label"] for r in history] == [wrong[13], label[13]]  # both kept; the latest counts
    verified = {r["id"]: r for r in pq.read_table(Path(config.run_dir) / "annotations/verified.parquet").to_pylist()}
    assert all(verified[ids[k]]["label"] == label[k] for k in (*range(4), *range(5, 12), 13)
               if verified[ids[k]]["status"] == "verified")
    assert all(verified[ids[k]]["status"] == "verified" for k in range(4))  # two agreeing answers
    assert verified[ids[4]]["status"] == "conflict" and verified[ids[4]]["label"] is None
    assert verified[ids[0]]["annotators"] == ["annotator", "annotator2"]

    review = client.datasets(name=review_name(config), workspace="curation")
    disputed = {i for i, r in verified.items() if r["status"] in ("conflict", "likely_error")}
    assert {r.id for r in review.records()} == disputed and ids[4] in disputed  # back for more answers
    assert review.settings.distribution.min_submitted == 3
    votes = {r.id: json.loads(r.metadata["votes"]) for r in review.records()}
    assert votes[ids[4]] == {label[4]: 1, wrong[4]: 1}

    push_batch(client, config.annotation, pq.read_table(round_dir(config, 0) / "batch.parquet"), "student-round-0000")
    final = harvest(client, config, read_batches(config))
    assert final["new_answers"] == 0 and final["records"] == stats["records"]  # a re-push keeps every answer


class RecordingHandler(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_a_push_resumes_across_a_server_restart(curated, local_argilla):
    config = load_config(curated)
    annotation = config.annotation.model_copy(update={"dataset": "restarted", "push_chunk": 2})
    rows = read_batches(config).to_pylist()  # ten copies under new ids: a push long enough to cut
    batch = pa.Table.from_pylist([{**r, "id": f"{r['id']}-{k}"} for k in range(10) for r in rows], BATCH_SCHEMA)
    server = LocalArgilla(Path(local_argilla["home"]))
    client = connect(annotation)
    result: dict = {}
    retries = RecordingHandler()
    logging.getLogger("annotators.push").addHandler(retries)
    pushing = threading.Thread(target=lambda: result.update(push_batch(client, annotation, batch, "student")))
    pushing.start()
    while not (dataset := client.datasets(name="restarted", workspace="curation")) or \
            not server_records(client, dataset):
        time.sleep(0.2)
    server.down()
    assert not result and not server.status()["running"]  # cut mid-push
    time.sleep(12)  # longer than the SDK's own connection retries (~8 s): our retry has to carry it
    server.up()
    pushing.join(timeout=300)
    assert result == {"dataset": "restarted", "pushed": 300, "on_server": 300}
    assert any("server unavailable" in r.getMessage() for r in retries.records)  # it waited, then resumed


def test_answers_that_cannot_count_are_quarantined_with_a_reason():
    # a fault the real server refuses to store (it validates labels), so the table is built by hand
    rows = [{"id": "a", "dataset": "d", "annotator": "x", "status": "submitted", "label": "sports", "updated_at": None},
            {"id": "a", "dataset": "d", "annotator": "y", "status": "submitted", "label": "cooking",
             "updated_at": None},
            {"id": "a", "dataset": "d", "annotator": "z", "status": "submitted", "label": None, "updated_at": None},
            {"id": "b", "dataset": "d", "annotator": "x", "status": "draft", "label": None, "updated_at": None}]
    valid, quarantined = check_responses(pa.Table.from_pylist(rows, RESPONSE_SCHEMA), ["sports"], {"a", "b"})
    assert valid.num_rows == 2 and [q["reason"] for q in quarantined] == ["unknown_label", "missing_label"]


def test_a_label_the_student_contradicts_with_confidence_is_a_likely_error_until_confirmed():
    rows = [{"id": f"r{k}", "dataset": "d", "annotator": "x", "status": "submitted", "label": "sports",
             "updated_at": datetime(2026, 1, 1, tzinfo=UTC)} for k in range(6)]
    student = {f"r{k}": {"sports": 0.9, "health": 0.1} for k in range(5)} | {"r5": {"sports": 0.05, "health": 0.95}}
    student |= {f"h{k}": {"sports": 0.1, "health": 0.9} for k in range(5)}
    rows += [{**rows[0], "id": f"h{k}", "label": "health"} for k in range(5)]
    config = AnnotationConfig()
    resolved = {r["id"]: r for r in resolve(pa.Table.from_pylist(rows, RESPONSE_SCHEMA), config, student).to_pylist()}
    assert resolved["r5"]["status"] == "likely_error" and resolved["r5"]["student_label"] == "health"
    assert all(resolved[f"r{k}"]["status"] == "verified" for k in range(5))
    confirmed = rows + [{**rows[5], "annotator": name} for name in ("y", "z")]  # three annotators agree
    assert resolve(pa.Table.from_pylist(confirmed, RESPONSE_SCHEMA), config, student).to_pylist()[5]["label"] \
        == "sports"


def test_secrets_must_be_references_never_the_secret():
    with pytest.raises(ValueError, match="never the secret itself"):
        AnnotationConfig(api_key="argilla.apikey-1234")
    with pytest.raises(ValueError, match="never the secret itself"):
        ExportConfig(hub_token="hf_1234")
    with pytest.raises(ConfigError, match="UNSET_VAR"):
        connect(AnnotationConfig(api_url="http://127.0.0.1:1", api_key="env:UNSET_VAR"))
    assert np.isclose(AnnotationConfig().min_agreement, 0.6)


def test_flows_take_the_key_from_a_prefect_secret_and_never_write_it(curated, local_argilla, owner_env, monkeypatch):
    import yaml
    from prefect.blocks.system import Secret
    from prefect.client.orchestration import get_client
    from prefect.testing.utilities import prefect_test_harness

    from flows.al_round import al_round
    from flows.annotation import annotate
    from flows.annotation import harvest as harvest_flow

    settings = yaml.safe_load(curated.read_text())
    settings["annotation"]["api_key"] = "prefect-secret:argilla-owner"
    config_path = curated.with_name("secret.yaml")
    config_path.write_text(yaml.safe_dump(settings))
    config = load_config(curated)
    client = connect(config.annotation)
    push_batch(client, config.annotation, read_batches(config), "student-round-0000")
    last = read_batches(config).column("id").to_pylist()[-1]  # one answer, so the next round has a new label
    dataset = client.datasets(name="sib-topics", workspace="curation")
    record = server_records(client, dataset)[last]["id"]
    answer(annotator(local_argilla, "annotator"), record, gold_of(config, [last])[0])
    monkeypatch.delenv("ARGILLA_API_KEY")  # only the Secret block knows the key now
    with prefect_test_harness(server_startup_timeout=120):
        Secret(value=owner_env).save("argilla-owner")
        pushed, stats = annotate(str(config_path), 0), harvest_flow(str(config_path))
        labeled = int(load_pool(load_config(config_path)).labeled.sum())  # source labels + verified ones
        next_round = al_round(str(config_path), push=True, wait_s=1)  # trains on the verified labels too
        with get_client(sync_client=True) as client:
            published = [str(a.data) for a in client.read_artifacts()] + [log.message for log in client.read_logs()]
    assert pushed["on_server"] == 30 and stats["answers"] > 0 and any("answers" in text for text in published)
    assert next_round["round"] == 1 and next_round["metrics"]["labeled"] == labeled > 32
    assert next_round["pushed"]["on_server"] == 30 and next_round["answered"] == 0.0  # nobody answered in 1 s
    written = [p.read_bytes() for p in Path(load_config(config_path).run_dir).rglob("*") if p.is_file()]
    assert not any(owner_env in text for text in published)
    assert not any(owner_env.encode() in data for data in written)
