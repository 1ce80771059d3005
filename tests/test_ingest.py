"""Readers, validation and quarantine, ids, normalisation: on real SIB-200 / XLM-T rows."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import ROOT, sib_corpus, write_config, write_jsonl, xlmt_rows

from curation.config import ConfigError, load_config
from curation.ingest import check_inputs, ingest_file, input_files
from curation.normalize import normalize_text, words
from curation.schema import Reason, record_id


def _ingest_all(config_path: Path) -> tuple[pa.Table, pa.Table, list]:
    config = load_config(config_path)
    stage_dir = Path(config.run_dir) / "ingest"
    stats = [s for f in check_inputs(config) for s in ingest_file(f, config, stage_dir)]
    kept = pa.concat_tables([pq.read_table(stage_dir / f"{s.shard}.parquet") for s in stats])
    quarantine = [pq.read_table(p) for p in sorted((stage_dir / "quarantine").glob("*.parquet"))]
    return kept, pa.concat_tables(quarantine) if quarantine else None, stats


def test_every_format_reads_the_same_real_rows(tmp_path):
    rows = sib_corpus(["eng_Latn", "hin_Deva", "zho_Hans"], 30)
    write_jsonl(tmp_path / "in" / "a.jsonl", rows)
    pa_table = pa.Table.from_pylist(rows)
    pq.write_table(pa_table, tmp_path / "in" / "b.parquet")
    pa_table.to_pandas().to_csv(tmp_path / "in" / "c.csv", index=False)
    pa_table.to_pandas().to_csv(tmp_path / "in" / "d.tsv", index=False, sep="\t")
    (tmp_path / "in" / "e.txt").write_text("\n".join(r["text"] for r in rows) + "\n", encoding="utf-8")
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "hf"))
    common = {"id_column": "id", "label_column": "label", "metadata_columns": ["flores"]}
    sources = [{"name": n, "path": str(tmp_path / "in" / f), **common}
               for n, f in [("jsonl", "a.jsonl"), ("parquet", "b.parquet"), ("csv", "c.csv"), ("tsv", "d.tsv")]]
    sources += [{"name": "text", "path": str(tmp_path / "in" / "e.txt")},
                {"name": "hf", "path": str(tmp_path / "hf"), "format": "hf_dataset", **common}]
    kept, quarantine, stats = _ingest_all(write_config(tmp_path, sources=sources))
    assert quarantine is None
    by_source = {}
    for row in kept.to_pylist():
        by_source.setdefault(row["source"], []).append(row)
    assert sorted(by_source) == ["csv", "hf", "jsonl", "parquet", "text", "tsv"]
    for name, got in by_source.items():
        assert [r["text"] for r in got] == [r["text"] for r in rows], name
    for name in ("csv", "hf", "jsonl", "parquet", "tsv"):
        assert [r["source_key"] for r in by_source[name]] == [r["id"] for r in rows]
        assert [r["label"] for r in by_source[name]] == [r["label"] for r in rows]
        assert json.loads(by_source[name][0]["meta"]) == {"flores": "eng_Latn"}
    assert by_source["text"][0]["source_key"] == "e.txt:1"
    assert sum(s.rows_in for s in stats) == 6 * len(rows)


def test_bad_input_is_quarantined_with_reasons_and_rows_are_conserved(tmp_path):
    config = write_config(tmp_path, max_text_chars=20000,
                          sources=[{"name": "messy", "path": str(ROOT / "samples" / "messy.jsonl"), "id_column": "id"}])
    kept, quarantine, stats = _ingest_all(config)
    reasons = dict(zip(quarantine.column("source_key").to_pylist(), quarantine.column("reason").to_pylist()))
    # quarantine entries name the file and line, so an engineer can open the offending input
    assert reasons == {"messy.jsonl:2": Reason.MALFORMED, "messy.jsonl:3": Reason.EMPTY_TEXT,
                       "messy.jsonl:4": Reason.WRONG_TYPE, "messy.jsonl:5": Reason.MISSING_TEXT,
                       "messy.jsonl:6": Reason.MALFORMED, "messy.jsonl:7": Reason.TOO_LONG,
                       "messy.jsonl:9": Reason.INVALID_UTF8}
    assert kept.column("source_key").to_pylist() == ["ok-1", "ok-2"]
    invalid = quarantine.filter(pa.compute.equal(quarantine["reason"], Reason.INVALID_UTF8))
    assert "caf\\xe9" in invalid["raw"][0].as_py()
    total = sum(s.rows_in for s in stats)
    assert total == 9 == kept.num_rows + quarantine.num_rows


def test_csv_with_a_ragged_row_and_invalid_utf8_keeps_going(tmp_path):
    tweets = xlmt_rows("french", 20)
    lines = ["text,label"] + [f'"{t["text"].replace(chr(34), chr(34) * 2)}",{t["label"]}' for t in tweets]
    lines[5] = "only-one-field"
    data = "\n".join(lines).encode() + b"\n\"caf\xe9\",1\n"
    (tmp_path / "t.csv").write_bytes(data)
    kept, quarantine, _ = _ingest_all(write_config(tmp_path, sources=[
        {"name": "xlmt", "path": str(tmp_path / "t.csv"), "label_column": "label"}]))
    assert sorted(quarantine.column("reason").to_pylist()) == [Reason.INVALID_UTF8, Reason.MALFORMED]
    assert kept.num_rows == 19


def test_shards_bound_memory_and_names_are_stable(tmp_path):
    rows = sib_corpus(["fra_Latn", "deu_Latn", "spa_Latn"], 100)
    write_jsonl(tmp_path / "a.jsonl", rows)
    config = write_config(tmp_path, shard_rows=70, sources=[{"name": "s", "path": str(tmp_path / "a.jsonl")}])
    kept, _, stats = _ingest_all(config)
    assert [s.shard for s in stats] == [f"part-00000-{i:05d}" for i in range(5)]
    assert [s.rows_in for s in stats] == [70, 70, 70, 70, 20]
    again, _, _ = _ingest_all(config)  # rerun rewrites the same shards with the same ids
    assert again.column("id").to_pylist() == kept.column("id").to_pylist()


def test_record_id_is_content_and_source_key():
    assert record_id("s", "k", "abc") == record_id("s", "k", "abc")
    assert len({record_id("s", "k", "abc"), record_id("s", "k2", "abc"), record_id("t", "k", "abc"),
                record_id("s", "k", "abd")}) == 4


def test_normalisation_keeps_meaningful_characters():
    assert normalize_text(" a\u00a0b\t\n c\x00\u200b ") == "a b c"
    assert normalize_text("می\u200cخواهم") == "می\u200cخواهم"  # ZWNJ in Persian is kept
    assert normalize_text("ｆｕｌｌ") == "full"  # NFKC
    assert words("İSTANBUL'da") == ["i̇stanbul", "da"]  # boundaries found before lower-casing
    assert words("हिन्दी भाषा") == ["हिन्दी", "भाषा"]  # vowel signs stay inside words


@pytest.mark.parametrize("problem, message", [
    ({"sources": [{"name": "x", "path": "/nonexistent/*.jsonl"}]}, "no input found"),
    ({"sources": [{"name": "x", "path": "PLACEHOLDER", "text_column": "body"}]}, "columns ['body']"),
    ({"sources": [{"name": "x", "path": "PLACEHOLDER"}], "near_dedup": {"bands": 20, "rows": 8}}, "exceeds num_perm"),
    ({"sources": [{"name": "x", "path": "PLACEHOLDER"}], "shard_rows": 0}, "shard_rows"),
    ({"sources": [{"name": "x", "path": "PLACEHOLDER"}], "lid": {"model_path": "/no/model.bin"}}, "lid.model_path"),
    ({"sources": [{"name": "x", "path": "PLACEHOLDER"}], "typo_key": 1}, "typo_key"),
])
def test_config_and_path_errors_are_clear_and_early(tmp_path, problem, message):
    pq.write_table(pa.Table.from_pylist(sib_corpus(["eng_Latn"], 5)), tmp_path / "in.parquet")
    for source in problem["sources"]:
        source["path"] = source["path"].replace("PLACEHOLDER", str(tmp_path / "in.parquet"))
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        check_inputs(load_config(write_config(tmp_path, **problem)))
    assert not (tmp_path / "run").exists()


def test_input_files_are_ordered_and_relative(tmp_path):
    for name in ("b.jsonl", "a.jsonl", "sub/c.jsonl"):
        write_jsonl(tmp_path / "in" / name, sib_corpus(["eng_Latn"], 2))
    config = load_config(write_config(tmp_path, sources=[{"name": "s", "path": str(tmp_path / "in")}]))
    assert [f.rel for f in input_files(config)] == ["a.jsonl", "b.jsonl", "sub/c.jsonl"]


def test_storage_secrets_come_from_the_environment_and_are_never_stored(tmp_path, monkeypatch):
    from curation.pipeline import LocalExecutor, run_pipeline

    write_jsonl(tmp_path / "a.jsonl", sib_corpus(["eng_Latn"], 5))
    source = {"name": "s", "path": str(tmp_path / "a.jsonl"),
              "storage_options": {"auto_mkdir": "env:CURATION_TEST_SECRET"}}
    config = load_config(write_config(tmp_path, sources=[source]))
    with pytest.raises(ConfigError, match="CURATION_TEST_SECRET"):
        check_inputs(config)
    monkeypatch.setenv("CURATION_TEST_SECRET", "s3cr3t-value")
    assert config.sources[0].fs_options() == {"auto_mkdir": "s3cr3t-value"}
    run_pipeline(config, LocalExecutor(config, progress=False))
    written = [p for p in (tmp_path / "run").rglob("*") if p.is_file()]
    assert written and not any(b"s3cr3t-value" in p.read_bytes() for p in written)
