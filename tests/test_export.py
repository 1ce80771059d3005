"""Export of a real curated SIB-200 run: leak-free splits, the mixture, shards `datasets` reads, a card."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import datasets
import pytest
import yaml
from conftest import sib_rows, write_config, write_jsonl
from typer.testing import CliRunner

from curation.cli import app
from curation.config import load_config
from curation.pipeline import LocalExecutor, run_pipeline

VARIETIES = {"eng_Latn": 60, "fra_Latn": 60, "hin_Deva": 40, "yor_Latn": 15}


@pytest.fixture(scope="module")
def curated(tmp_path_factory) -> Path:
    """SIB-200 sentences that are translations of each other across four languages, all labeled."""
    folder = tmp_path_factory.mktemp("export")
    rows = [{"id": f"{v}/{r['index_id']}", "text": r["text"], "label": r["category"]}
            for v, n in VARIETIES.items() for r in sib_rows(v, "train", n)]
    write_jsonl(folder / "in.jsonl", rows)
    path = write_config(folder, shard_rows=60, sources=[
        {"name": "sib", "path": str(folder / "in.jsonl"), "id_column": "id", "label_column": "label"}],
        embed={"enabled": True}, coverage={"enabled": True}, semdedup={"enabled": True},
        mixture={"temperature": 5, "max_epochs": 3, "seed": 1},
        export={"shard_rows": 50, "splits": {"train": 0.6, "validation": 0.2, "test": 0.2}})
    config = load_config(path)
    run_pipeline(config, LocalExecutor(config, progress=False))
    return path


@pytest.mark.slow
def test_export_writes_leak_free_mixed_splits_and_a_card(curated):
    result = CliRunner().invoke(app, ["export", str(curated), "--local"])
    assert result.exit_code == 0, result.output
    out = Path(load_config(curated).run_dir) / "export"
    summary = json.loads((out / "export.json").read_text())
    loaded = datasets.load_dataset("parquet", data_dir=str(out / "data"))
    assert set(loaded) == {"train", "validation", "test"}
    sentence = {row["text"]: row["index_id"] for row in sib_rows_all()}  # the same sentence in every language
    spans: dict[str, set] = {}
    for split in ("train", "validation", "test"):
        for row in loaded[split]:
            spans.setdefault(sentence[row["text"]], set()).add(split)
    crossing = sum(len(s) > 1 for s in spans.values())
    assert summary["leaks"] == 0
    largest_group = len(VARIETIES)  # a sentence and its translations
    for split, share in {"train": 0.6, "validation": 0.2, "test": 0.2}.items():
        if split != "train":  # train is resampled by the mixture
            assert abs(summary["splits"][split]["rows"] - share * summary["rows"]) <= largest_group
    assert crossing <= 0.1 * len(spans), crossing  # only translations semdedup did not flag can cross
    train = summary["splits"]["train"]
    assert len(train["files"]) == -(-train["rows"] // 50) and train["files"][0].startswith("data/train-00000-of-")
    mix = sorted(summary["mixture"]["report"], key=lambda r: r["available"])
    smallest, largest = mix[0], mix[-1]
    assert smallest["achieved_share"] > smallest["natural_share"] and 1 < smallest["epochs"] <= 3  # T = 5 lifts it
    assert largest["epochs"] < 1
    assert loaded["train"].num_rows == train["rows"] and set(loaded["train"]["label_provenance"]) == {"source"}
    card = (out / "README.md").read_text()
    header = yaml.safe_load(card.split("---")[1])
    assert {"eng", "fra", "hin"} <= set(header["language"]) and "und" not in header["language"]  # lid.176: no yor
    assert header["size_categories"] == ["n<1K"]
    assert {f["split"] for f in header["configs"][0]["data_files"]} == set(loaded)
    assert "Known limitations" in card and "semdedup" in card and "| train |" in card
    assert (out / "card.png").read_bytes()[:4] == b"\x89PNG"


def sib_rows_all() -> list[dict]:
    return [r for v, n in VARIETIES.items() for r in sib_rows(v, "train", n)]


@pytest.mark.slow
def test_back_translations_join_train_only_and_are_counted_in_the_card(curated, tmp_path):
    if shutil.which("apertium") is None:
        pytest.skip("Debian's apertium is not installed (apt-get install apertium apertium-eng-spa)")
    from curation.active import train_round
    from curation.export import export

    config = load_config(curated)
    train_round(config, 0)  # a student: its labels for the round trips are checked against the gold ones
    config = config.model_copy(update={
        "augment": config.augment.model_copy(update={"enabled": True, "max_synthetic_share": 0.2}),
        "export": config.export.model_copy(update={"output_dir": str(tmp_path / "out")})})
    summary = export(config)
    train = summary["splits"]["train"]
    assert train["provenance"].get("synthetic", 0) > 0
    assert all("synthetic" not in summary["splits"][name]["provenance"] for name in ("validation", "test"))
    stats = summary["augment"]
    assert stats["candidates"] == stats["accepted"] + stats["rejected"]
    assert (tmp_path / "out" / "augment_rejected.parquet").exists()
    card = Path(summary["card"]).read_text()
    assert f"Synthetic rows in train: {train['provenance']['synthetic']}" in card
    assert "## Back-translation (apertium)" in card and "| eng_Latn |" in card  # per language and guard
    english = stats["languages"]["eng_Latn"]
    assert english["candidates"] == english["accepted"] + english["rejected"]
    assert english["failed"]["synthetic_cap"] > 0 and set(english["failed"]) == set(stats["guards"])
    assert stats["guards"]["label_changed"]["checked"] > 0


@pytest.mark.slow
def test_mix_and_export_flow_reruns_to_the_same_shards_and_copies_the_card(curated, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.testing.utilities import prefect_test_harness

    from flows.export import mix_and_export

    settings = yaml.safe_load(curated.read_text())
    settings["export"].update(output_dir=str(tmp_path / "out"), card_dir=str(tmp_path / "data_cards"))
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(settings))
    with prefect_test_harness(server_startup_timeout=120):
        first = mix_and_export(str(config))
        shards = {p.name: p.read_bytes() for p in (tmp_path / "out" / "data").iterdir()}
        (tmp_path / "out" / "data" / next(iter(shards))).unlink()  # a lost shard comes back on rerun
        second = mix_and_export(str(config))
        with get_client(sync_client=True) as client:
            keys = {a.key for a in client.read_artifacts() if a.key}
    assert {"export", "export-mixture"} <= keys
    assert first == second
    assert {p.name: p.read_bytes() for p in (tmp_path / "out" / "data").iterdir()} == shards
    copy = tmp_path / "data_cards" / Path(settings["run_dir"]).name
    assert (copy / "README.md").read_text() == (tmp_path / "out" / "README.md").read_text()
    assert (copy / "card.png").read_bytes()[:4] == b"\x89PNG"


def test_hub_push_uploads_shards_card_and_numbers_only(curated, tmp_path):
    """The Hub cannot be reached here: a recording stand-in for `HfApi` checks what would be sent."""
    import fnmatch
    import inspect

    from curation.export import export, push_to_hub

    config = load_config(curated)
    config = config.model_copy(update={"export": config.export.model_copy(update={"output_dir": str(tmp_path)})})
    export(config)
    (tmp_path / "augment_rejected.parquet").write_bytes(b"internal")

    from huggingface_hub import HfApi

    class RecordingApi:  # each call is bound to the real HfApi method's signature
        def __init__(self):
            self.calls = []

        def create_repo(self, repo, **options):
            inspect.signature(HfApi.create_repo).bind(self, repo, **options)
            self.calls.append(("create_repo", repo, options))

        def upload_folder(self, **options):
            inspect.signature(HfApi.upload_folder).bind(self, **options)
            self.calls.append(("upload_folder", options))
            return "https://huggingface.co/datasets/team/sib/commit/0"

    api = RecordingApi()
    assert push_to_hub(tmp_path, "team/sib", "hf_secret", True, api).endswith("/commit/0")
    (_, repo, created), (_, upload) = api.calls
    assert repo == "team/sib" and created == {"repo_type": "dataset", "private": True, "exist_ok": True}
    files = [str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()]
    sent = {f for f in files if any(fnmatch.fnmatch(f, pattern) for pattern in upload["allow_patterns"])}
    assert sent == set(files) - {"augment_rejected.parquet"} and any(f.startswith("data/train-") for f in sent)
    assert upload["delete_patterns"] == ["data/*.parquet"]  # shards of an earlier, larger export go
