"""The whole curate pipeline: outputs, manifests, reports, the Prefect flow, a real kill and rerun."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import datasets
import pyarrow.parquet as pq
import pytest
from conftest import ROOT, sib_corpus, write_config, write_jsonl, xlmt_rows
from typer.testing import CliRunner

from curation.active import metric_history
from curation.cli import app
from curation.config import ConfigError, load_config
from curation.pipeline import LocalExecutor, run_pipeline

STAGES = ("ingest", "lid", "exact_dedup", "near_dedup")


def _corpus(tmp_path: Path, varieties: int = 12, per_variety: int = 60) -> list[dict]:
    names = sorted(p.name for p in (ROOT.parent / "shared" / "data" / "sib200").iterdir() if p.is_dir())
    rows = sib_corpus(names[:: max(1, len(names) // varieties)][:varieties], per_variety)
    write_jsonl(tmp_path / "in" / "sib.jsonl", rows + rows[::7])  # exact copies too
    write_jsonl(tmp_path / "in" / "tweets.jsonl", xlmt_rows("spanish", 100) + xlmt_rows("arabic", 100))
    return rows


def _sources(tmp_path: Path) -> list[dict]:
    return [{"name": "sib", "path": str(tmp_path / "in" / "sib.jsonl"), "label_column": "label"},
            {"name": "tweets", "path": str(tmp_path / "in" / "tweets.jsonl"), "label_column": "label"}]


def _kept(run_dir: Path) -> list[dict]:
    return [r for p in sorted((run_dir / "near_dedup").glob("part-*.parquet"))
            for r in pq.read_table(p, columns=["id", "text", "lang"]).to_pylist()]


def test_outputs_manifests_stats_and_report(tmp_path):
    _corpus(tmp_path)
    config = load_config(write_config(tmp_path, sources=_sources(tmp_path), shard_rows=150))
    summary = run_pipeline(config, LocalExecutor(config, progress=False))
    run_dir = Path(config.run_dir)
    for stage in STAGES:
        stats = json.loads((run_dir / stage / "stats.json").read_text())
        assert stats["rows_in"] == stats["kept"] + sum(stats["dropped"].values()) + sum(stats["quarantined"].values())
        manifest = json.loads((run_dir / stage / "manifest.json").read_text())
        for entry in manifest["shards"] + manifest["dropped"] + manifest["quarantine"]:
            path = run_dir / stage / entry["path"]
            assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
            assert pq.ParquetFile(path).metadata.num_rows == entry["rows"]
        assert sum(e["rows"] for e in manifest["shards"]) == stats["kept"]
    lid_stats = json.loads((run_dir / "lid" / "stats.json").read_text())
    assert lid_stats["languages"]["spa_Latn"] >= 80 and lid_stats["languages"]["arb_Arab"] >= 60
    assert json.loads((run_dir / "exact_dedup" / "stats.json").read_text())["dropped"]["exact_duplicate"] >= 100
    files = sorted(str(p) for p in (run_dir / "near_dedup").glob("part-*.parquet"))
    loaded = datasets.load_dataset("parquet", data_files=files, split="train")
    assert loaded.num_rows == summary["stages"][-1]["kept"] and "lang_topk" in loaded.column_names
    assert (run_dir / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| near_dedup |" in (run_dir / "report.md").read_text()


def test_a_run_dir_belongs_to_one_config(tmp_path):
    _corpus(tmp_path, varieties=2, per_variety=10)
    config = load_config(write_config(tmp_path, sources=_sources(tmp_path)))
    run_pipeline(config, LocalExecutor(config, progress=False))
    changed = load_config(write_config(tmp_path, sources=_sources(tmp_path), near_dedup={"threshold": 0.5}))
    with pytest.raises(ConfigError, match="another config"):
        run_pipeline(changed, LocalExecutor(changed, progress=False))


def test_cli_reports_config_errors_before_work(tmp_path):
    bad = write_config(tmp_path, sources=[{"name": "x", "path": str(tmp_path / "missing.jsonl")}])
    result = CliRunner().invoke(app, ["run", str(bad)])
    assert result.exit_code == 2 and "no input found" in result.output
    assert not (tmp_path / "run").exists()
    assert "near_dedup" in CliRunner().invoke(app, ["run", "--help"]).output


def test_cli_stage_commands_run_one_stage_at_a_time(tmp_path):
    _corpus(tmp_path, varieties=3, per_variety=20)
    config = write_config(tmp_path, sources=_sources(tmp_path))
    runner = CliRunner()
    assert "has not finished" in runner.invoke(app, ["lid", str(config)]).output
    for command in ("ingest", "lid", "exact-dedup", "near-dedup"):
        result = runner.invoke(app, [command, str(config)])
        assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["stage"] == "near_dedup"


def _curate_subprocess(config: Path, prefect_home: Path) -> subprocess.Popen:
    env = {**os.environ, "PREFECT_HOME": str(prefect_home)}
    curate = Path(sys.executable).parent / "curate"
    return subprocess.Popen([str(curate), "run", str(config)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


@pytest.mark.slow
def test_a_killed_flow_reruns_to_the_same_result(tmp_path):
    """SIGKILL the real `curate run` (Prefect flow + its API server) mid-run, rerun, compare."""
    _corpus(tmp_path, varieties=40, per_variety=100)
    config = write_config(tmp_path, sources=_sources(tmp_path), shard_rows=150)
    process = _curate_subprocess(config, tmp_path / "prefect")
    lid_done = tmp_path / "run" / "lid" / "_stats"
    deadline = time.time() + 300
    while time.time() < deadline and len(list(lid_done.glob("part-*.json"))) < 3:
        assert process.poll() is None, process.stdout.read().decode()
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (tmp_path / "run" / "near_dedup" / "manifest.json").exists(), "killed too late to test resumption"

    rerun = _curate_subprocess(config, tmp_path / "prefect")
    try:
        output = rerun.communicate(timeout=600)[0].decode()
    finally:  # never leave a hung rerun behind
        if rerun.poll() is None:
            os.killpg(rerun.pid, signal.SIGKILL)
    assert rerun.returncode == 0, output[-3000:]
    assert "Cached" in output  # the shards finished before the kill were not redone

    reference_dir = tmp_path / "reference"
    reference_dir.mkdir()
    reference = load_config(write_config(reference_dir, sources=_sources(tmp_path), shard_rows=150))
    run_pipeline(reference, LocalExecutor(reference, progress=False))
    resumed, fresh = _kept(tmp_path / "run"), _kept(reference_dir / "run")
    assert len({r["id"] for r in resumed}) == len(resumed)  # nothing doubled
    assert resumed == fresh  # nothing lost, same order, same languages


@pytest.mark.slow
def test_flow_publishes_artifacts(tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.testing.utilities import prefect_test_harness

    from flows.al_round import al_round
    from flows.curate import curate

    _corpus(tmp_path, varieties=3, per_variety=20)
    sources = _sources(tmp_path)
    del sources[1]["label_column"]  # the tweets are the unlabeled pool
    config = write_config(tmp_path, sources=sources, embed={"enabled": True}, coverage={"enabled": True},
                          semdedup={"enabled": True}, active_learning={"selection": {"batch_size": 20}})
    with prefect_test_harness(server_startup_timeout=120):
        summary = curate(str(config))
        first, second = al_round(str(config)), al_round(str(config))
        with get_client(sync_client=True) as client:
            keys = {a.key for a in client.read_artifacts() if a.key}
            kinds = {a.type for a in client.read_artifacts()}
    assert [s["stage"] for s in summary["stages"]] == [
        "ingest", "lid", "exact_dedup", "near_dedup", "embed", "coverage", "semdedup"]
    assert {"run-stages", "run-report", "run-coverage", "al-round-0", "al-round-1", "al-history"} <= keys
    history = metric_history(load_config(config))
    assert {r["round"] for r in history} == {0, 1}
    assert all(any("accuracy" in r for r in history if r["round"] == n) for n in (0, 1))  # held-out scores
    assert (Path(load_config(config).run_dir) / "al" / "history.png").read_bytes()[:4] == b"\x89PNG"
    assert (first["round"], second["round"]) == (0, 1) and first["batch"]["batch"] == 20
    batches = [set(pq.read_table(r["batch"]["path"])["id"].to_pylist()) for r in (first, second)]
    assert not batches[0] & batches[1]  # a pending batch is not selected again
    assert set(first["batch"]["languages"]) <= {"spa_Latn", "arb_Arab", "und", "eng_Latn"}
    assert {"progress", "table", "markdown"} <= kinds  # a link artifact is stored as markdown


def test_a_run_directory_refuses_changed_inputs(tmp_path):
    _corpus(tmp_path, varieties=2, per_variety=10)
    config = load_config(write_config(tmp_path, sources=_sources(tmp_path)))
    run_pipeline(config, LocalExecutor(config, progress=False))
    run_pipeline(config, LocalExecutor(config, progress=False))  # same inputs: resumes (nothing to do)
    write_jsonl(tmp_path / "in" / "tweets.jsonl", xlmt_rows("french", 20))
    with pytest.raises(ConfigError, match="other input files"):
        run_pipeline(config, LocalExecutor(config, progress=False))
