"""Exact and near-duplicate removal on real multilingual text with planted duplicates."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import sib_corpus, write_config, write_jsonl
from planted import jaccard, plant

from curation.config import load_config
from curation.dedup_near import MinHasher, shingles
from curation.pipeline import LocalExecutor, run_pipeline
from curation.scripts import detect_scripts

VARIETIES = ["eng_Latn", "fra_Latn", "hin_Deva", "rus_Cyrl", "arb_Arab", "zho_Hans", "jpn_Jpan", "tha_Thai"]


def _run(tmp_path: Path, sources: list[dict], **overrides) -> Path:
    config = load_config(write_config(tmp_path, sources=sources, **overrides))
    run_pipeline(config, LocalExecutor(config, progress=False))
    return Path(config.run_dir)


def _dropped(run_dir: Path, stage: str) -> list[dict]:
    return [r for p in sorted((run_dir / stage / "dropped").glob("*.parquet")) for r in pq.read_table(p).to_pylist()]


def _final_keeper(run_dir: Path) -> dict[str, str]:
    """source_key → source_key of the record that represents it after both dedup stages."""
    key_of = {}
    for stage in ("lid", "exact_dedup", "near_dedup"):
        for path in (run_dir / stage).glob("part-*.parquet"):
            key_of.update(zip(pq.read_table(path, columns=["id"])["id"].to_pylist(),
                              pq.read_table(path, columns=["source_key"])["source_key"].to_pylist()))
    parent = {r["id"]: r["dup_of"] for stage in ("exact_dedup", "near_dedup") for r in _dropped(run_dir, stage)}

    def root(record_id: str) -> str:
        while record_id in parent:
            record_id = parent[record_id]
        return record_id

    return {key_of[i]: key_of[root(i)] for i in key_of}


def test_exact_duplicates_across_sources_name_their_keeper(tmp_path):
    rows = sib_corpus(["eng_Latn", "yor_Latn"], 40)
    copies = [{**r, "id": r["id"] + "-copy", "text": "  " + r["text"].replace(" ", "\u00a0", 2) + "\n"}
              for r in rows[::4]]
    write_jsonl(tmp_path / "a.jsonl", rows)
    write_jsonl(tmp_path / "b.jsonl", copies)
    run_dir = _run(tmp_path, [{"name": "a", "path": str(tmp_path / "a.jsonl"), "id_column": "id"},
                              {"name": "b", "path": str(tmp_path / "b.jsonl"), "id_column": "id"}],
                   near_dedup={"enabled": False})
    dropped = _dropped(run_dir, "exact_dedup")
    assert len(dropped) == len(copies)
    assert {r["source"] for r in dropped} == {"b"} and {r["drop_reason"] for r in dropped} == {"exact_duplicate"}
    kept = {r["id"]: r for r in pq.read_table(run_dir / "exact_dedup" / "part-00000-00000.parquet").to_pylist()}
    for row in dropped:
        assert kept[row["dup_of"]]["source_key"] == row["source_key"].removesuffix("-copy")
    stats = json.loads((run_dir / "exact_dedup" / "stats.json").read_text())
    assert stats["rows_in"] == len(rows) + len(copies) == stats["kept"] + stats["dropped"]["exact_duplicate"]


@pytest.mark.slow
def test_near_duplicates_found_by_jaccard_across_scripts(tmp_path):
    docs = sib_corpus(VARIETIES, 150)
    for doc, script in zip(docs, detect_scripts([d["text"] for d in docs])):
        doc["script"] = script
    copies = plant(docs, share=0.3, seed=1)
    write_jsonl(tmp_path / "docs.jsonl", [{"id": d["id"], "text": d["text"]} for d in docs + copies])
    run_dir = _run(tmp_path, [{"name": "s", "path": str(tmp_path / "docs.jsonl"), "id_column": "id"}],
                   near_dedup={"threshold": 0.8})
    keeper = _final_keeper(run_dir)
    found = {c["id"]: keeper[c["id"]] == keeper[c["parent"]] for c in copies}
    high = [c for c in copies if c["jaccard"] >= 0.85]
    low = [c for c in copies if c["jaccard"] < 0.6]
    assert len(high) > 100 and len(low) > 50
    assert sum(found[c["id"]] for c in high) / len(high) >= 0.95
    assert sum(found[c["id"]] for c in low) / len(low) <= 0.02
    unspaced = [c for c in high if c["script"] in ("Hans", "Jpan", "Thai")]
    assert unspaced and sum(found[c["id"]] for c in unspaced) / len(unspaced) >= 0.95
    # every near-duplicate drop really is similar to the record it names
    text_of = {d["id"]: d for d in docs + copies}
    id_to_key = {r["id"]: r["source_key"] for r in _dropped(run_dir, "near_dedup")}
    kept_key = {r["id"]: r["source_key"] for p in (run_dir / "exact_dedup").glob("part-*.parquet")
                for r in pq.read_table(p, columns=["id", "source_key"]).to_pylist()}
    for row in _dropped(run_dir, "near_dedup"):
        a, b = text_of[id_to_key[row["id"]]], text_of[kept_key[row["dup_of"]]]
        sim = jaccard(set(shingles(a["text"], a["script"], 3, 4)), set(shingles(b["text"], b["script"], 3, 4)))
        assert sim >= 0.6, (a["text"], b["text"])


@pytest.mark.parametrize("keep", ["first", "longest", "score"])
def test_keep_policy_picks_the_cluster_representative(tmp_path, keep):
    base = sib_corpus(["eng_Latn"], 30)
    long_copy = {"id": "long", "text": base[0]["text"] + " Reported in 2019.", "rank": 1}
    rows = [{**r, "rank": 0} for r in base] + [long_copy, {"id": "best", "text": base[0]["text"] + " 2019", "rank": 9}]
    write_jsonl(tmp_path / "a.jsonl", rows)
    extra = {"score_column": "rank"} if keep == "score" else {}
    run_dir = _run(tmp_path, [{"name": "a", "path": str(tmp_path / "a.jsonl"), "id_column": "id",
                               "metadata_columns": ["rank"]}],
                   near_dedup={"threshold": 0.7, "keep": keep, **extra})
    kept = {r["source_key"] for r in pq.read_table(run_dir / "near_dedup" / "part-00000-00000.parquet").to_pylist()}
    winner = {"first": base[0]["id"], "longest": "long", "score": "best"}[keep]
    cluster = {base[0]["id"], "long", "best"}
    assert kept & cluster == {winner}


def test_minhash_estimates_jaccard():
    hasher = MinHasher(256)
    docs = sib_corpus(["eng_Latn"], 60)
    copies = plant([{**d, "script": "Latn"} for d in docs], share=1.0, seed=3)
    sets = [shingles(d["text"], "Latn", 3, 4) for d in docs] + [shingles(c["text"], "Latn", 3, 4) for c in copies]
    sigs = MinHasher(256).signatures(sets)
    parent_index = {d["id"]: i for i, d in enumerate(docs)}
    errors = [abs((sigs[parent_index[c["parent"]]] == sigs[len(docs) + k]).mean() - c["jaccard"])
              for k, c in enumerate(copies)]
    assert sum(errors) / len(errors) < 0.04
    assert (hasher.signatures(sets[:5]) == sigs[:5]).all()  # deterministic across instances


def test_dedup_reads_any_number_of_shards_and_conserves_rows(tmp_path):
    rows = sib_corpus(["deu_Latn", "spa_Latn"], 120)
    write_jsonl(tmp_path / "a.jsonl", rows + rows[:50])
    run_dir = _run(tmp_path, [{"name": "a", "path": str(tmp_path / "a.jsonl")}], shard_rows=37)
    for stage in ("ingest", "lid", "exact_dedup", "near_dedup"):
        stats = json.loads((run_dir / stage / "stats.json").read_text())
        assert stats["rows_in"] == stats["kept"] + sum(stats["dropped"].values()) + sum(stats["quarantined"].values())
        assert stats["shards"] == 8
    assert json.loads((run_dir / "exact_dedup" / "stats.json").read_text())["dropped"] == {"exact_duplicate": 50}
    kept = pa.concat_tables(pq.read_table(p) for p in sorted((run_dir / "exact_dedup").glob("part-*.parquet")))
    assert sorted(kept["text"].to_pylist()) == sorted(r["text"] for r in rows)
