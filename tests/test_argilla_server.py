"""The local Argilla server end to end: real argilla-server 2.8 (own venv), SQLite database and search
index, real Redis, the real `argilla` SDK. Nothing is mocked."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import argilla as rg
import pytest
from typer.testing import CliRunner

from annotators.cli import argilla_app
from annotators.local_server import LocalArgilla

pytestmark = pytest.mark.slow

N = 40
LANGS = ["en", "fr", "zh", "sw"]
TEXTS = {
    "en": "The cat number {i} sleeps on the mat",
    "fr": "Le chat numéro {i} dort sur le tapis",
    "zh": "第{i}只猫在垫子上睡觉",
    "sw": "Paka namba {i} analala kwenye mkeka",
}


def client(info: dict, username: str) -> rg.Argilla:
    api_key = LocalArgilla(Path(info["home"])).credentials(username)["api_key"]
    return rg.Argilla(api_url=info["url"], api_key=api_key)


@pytest.fixture(scope="module")
def owner(local_argilla: dict) -> rg.Argilla:
    return client(local_argilla, "owner")


@pytest.fixture(scope="module")
def annotator(local_argilla: dict) -> rg.Argilla:
    return client(local_argilla, "annotator")


def angle_vector(i: int) -> list[float]:
    """Records on a circle: record i's nearest neighbours are i - 1 and i + 1."""
    theta = 2 * math.pi * i / N
    return [math.cos(theta), math.sin(theta), 0.0, 0.0]


@pytest.fixture(scope="module")
def dataset(owner: rg.Argilla) -> rg.Dataset:
    settings = rg.Settings(
        fields=[rg.TextField(name="text")],
        questions=[rg.LabelQuestion(name="label", labels=["pos", "neg"])],
        metadata=[rg.TermsMetadataProperty(name="lang"), rg.FloatMetadataProperty(name="conf")],
        vectors=[rg.VectorField(name="emb", dimensions=4)],
        distribution=rg.TaskDistribution(min_submitted=1),
    )
    ds = rg.Dataset(name="server-test", workspace="curation", settings=settings, client=owner).create()
    ds.records.log([
        rg.Record(
            id=f"r{i}",
            fields={"text": TEXTS[LANGS[i % 4]].format(i=i)},
            metadata={"lang": LANGS[i % 4], "conf": i / N},
            vectors={"emb": angle_vector(i)},
            suggestions=[rg.Suggestion("label", "pos" if i % 2 == 0 else "neg", score=i / N,
                                       agent="model-a" if i < N // 2 else "model-b")],
        )
        for i in range(N)
    ])
    return ds


def ids(ds: rg.Dataset, query: rg.Query | str) -> list[str]:
    query = rg.Query(query=query) if isinstance(query, str) else query
    found = ds.records(query=query)
    return [item[0].id if isinstance(item, tuple) else item.id for item in found]  # similarity: (record, score)


def where(*conditions: tuple) -> rg.Query:
    return rg.Query(filter=rg.Filter(list(conditions)))


def me_search(annotator: rg.Argilla, ds: rg.Dataset, status: str) -> dict:
    """The web UI's own search for an annotator's queue (the server adds the user's id to the search call)."""
    body = {"filters": {"and": [{"type": "terms", "scope": {"entity": "response", "property": "status"},
                                 "values": [status]}]}}
    response = annotator.http_client.post(f"/api/v1/me/datasets/{ds.id}/records/search", json=body)
    response.raise_for_status()
    return response.json()


def test_up_twice_is_harmless(local_argilla: dict) -> None:
    again = LocalArgilla(Path(local_argilla["home"]))  # as a second `curate argilla up` would see it
    before = again.status()  # (other tests may have restarted the server: compare with now)
    started = time.monotonic()
    assert again.up() == before and before["url"] == local_argilla["url"]
    assert time.monotonic() - started < 5
    assert again.status()["running"]
    assert oct(os.stat(local_argilla["credentials"]).st_mode & 0o777) == "0o600"


def test_cli_status_and_up_print_no_secrets(local_argilla: dict) -> None:
    home = local_argilla["home"]
    runner = CliRunner()
    status = runner.invoke(argilla_app, ["status", "--home", home])
    up = runner.invoke(argilla_app, ["up", "--home", home])
    assert status.exit_code == 0 and up.exit_code == 0, status.output + up.output
    assert local_argilla["url"] in up.output and "owner" in up.output and local_argilla["credentials"] in up.output
    credentials = LocalArgilla(Path(home)).credentials()
    for user in credentials["users"]:
        assert user["api_key"] not in status.output + up.output
        assert user["password"] not in status.output + up.output


def test_filters(dataset: rg.Dataset) -> None:
    assert ids(dataset, where(("metadata.lang", "==", "zh"))) == [f"r{i}" for i in range(2, N, 4)]
    assert len(ids(dataset, where(("metadata.conf", ">=", 0.5)))) == N // 2
    assert len(ids(dataset, where(("response.status", "==", "pending")))) == N
    assert ids(dataset, where(("label.suggestion", "==", "neg"))) == [f"r{i}" for i in range(1, N, 2)]
    both = where(("label.score", ">=", 0.75), ("label.agent", "==", "model-b"), ("metadata.lang", "==", "en"))
    assert ids(dataset, both) == ["r32", "r36"]


def test_text_search(dataset: rg.Dataset) -> None:
    assert ids(dataset, "chat") == [f"r{i}" for i in range(1, N, 4)]
    assert len(ids(dataset, "cat sleeps")) == N // 4
    assert len(ids(dataset, "猫")) == N // 4  # CJK: one token per character
    assert len(ids(dataset, "睡觉")) == N // 4
    assert ids(dataset, '"numéro 5"') == ["r5"]
    assert ids(dataset, "cat -mat") == []


def test_vector_similarity(dataset: rg.Dataset) -> None:
    scored = list(dataset.records(query=rg.Query(similar=rg.Similar("emb", angle_vector(10)))))
    by_value = [record.id for record, _ in scored]
    assert by_value[0] == "r10" and set(by_value[1:3]) == {"r9", "r11"}
    assert scored[0][1] == pytest.approx(1.0)  # Elasticsearch's cosine score, (1 + cos) / 2
    r10 = next(record for record in dataset.records if record.id == "r10")
    by_record = ids(dataset, rg.Query(similar=rg.Similar("emb", r10)))
    assert "r10" not in by_record and set(by_record[:2]) == {"r9", "r11"}
    least = ids(dataset, rg.Query(similar=rg.Similar("emb", angle_vector(10), most_similar=False)))
    assert least[0] == "r30"


def test_sort_and_metadata_metrics(owner: rg.Argilla, dataset: rg.Dataset) -> None:
    body = {"sort": [{"scope": {"entity": "metadata", "metadata_property": "conf"}, "order": "desc"}]}
    found = owner.http_client.post(f"/api/v1/datasets/{dataset.id}/records/search", json=body, params={"limit": 3})
    assert [item["record"]["external_id"] for item in found.json()["items"]] == ["r39", "r38", "r37"]
    lang = dataset.settings.metadata["lang"]
    metrics = owner.http_client.get(f"/api/v1/metadata-properties/{lang.id}/metrics").json()
    assert metrics["total"] == N and {v["term"]: v["count"] for v in metrics["values"]} == dict.fromkeys(LANGS, 10)


def test_annotator_response_reaches_owner(owner: rg.Argilla, annotator: rg.Argilla, dataset: rg.Dataset) -> None:
    queue = me_search(annotator, dataset, "pending")
    assert queue["total"] == N
    first = queue["items"][0]["record"]
    response = annotator.http_client.post(
        f"/api/v1/records/{first['id']}/responses",
        json={"values": {"label": {"value": "neg"}}, "status": "submitted"},
    )
    assert response.status_code == 201, response.text

    record = next(r for r in dataset.records(with_responses=True) if r.id == first["external_id"])
    assert [(r.value, r.status) for r in record.responses["label"]] == [("neg", "submitted")]
    assert record.status == "completed"
    assert ids(dataset, where(("response.status", "==", "submitted"))) == [first["external_id"]]
    assert ids(dataset, where(("label.response", "==", "neg"))) == [first["external_id"]]
    assert len(ids(dataset, where(("response.status", "==", "pending")))) == N - 1
    progress = dataset.progress(with_users_distribution=True)
    assert (progress["completed"], progress["pending"]) == (1, N - 1)
    assert progress["users"]["annotator"]["completed"]["submitted"] == 1
    assert me_search(annotator, dataset, "pending")["total"] == N - 1
    mine = annotator.http_client.get(f"/api/v1/me/datasets/{dataset.id}/metrics").json()
    assert mine["responses"]["submitted"] == 1


def test_worker_updates_statuses(owner: rg.Argilla, dataset: rg.Dataset) -> None:
    """A distribution change is a job for the rq worker, a separate process writing the same SQLite index."""
    dataset.settings.distribution = rg.TaskDistribution(min_submitted=2)
    dataset.update()
    deadline = time.monotonic() + 30
    while dataset.progress()["completed"] != 0:
        assert time.monotonic() < deadline, "the worker did not recompute the record statuses"
        time.sleep(0.5)
    assert ids(dataset, where(("status", "==", "completed"))) == []


def test_down_then_up_keeps_the_data(local_argilla: dict, dataset: rg.Dataset) -> None:
    server = LocalArgilla(Path(local_argilla["home"]))
    server.down()
    assert not server.status()["running"]
    assert not (Path(local_argilla["home"]) / "tmp").exists()
    assert server.up()["url"] == local_argilla["url"]

    again = client(local_argilla, "owner").datasets(name="server-test", workspace="curation")
    assert len(list(again.records)) == N
    assert ids(again, where(("response.status", "==", "submitted"))) != []
    assert ids(again, '"numéro 5"') == ["r5"]
    assert ids(again, rg.Query(similar=rg.Similar("emb", angle_vector(3))))[0] == "r3"
