"""A real Prefect server: deployments served by `curate serve` and triggered, language drift between
two runs of a deployment, the curate flow on a 2-worker Dask cluster; and the run-directory lock."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import sib_corpus, write_config, write_jsonl, xlmt_rows
from prefect.settings import PREFECT_API_URL, temporary_settings

from curation.config import load_config
from curation.daemons import Daemons, alive, free_ports
from flows.server import PrefectServer


@pytest.fixture(scope="module")
def api_url(tmp_path_factory) -> str:
    server = PrefectServer(tmp_path_factory.mktemp("prefect-server"), port=free_ports(1)[0])
    try:
        yield server.up()["api_url"]
    finally:
        server.down()
    assert not server.answers()


def _config(folder: Path, **overrides) -> Path:
    write_jsonl(folder / "in" / "sib.jsonl", sib_corpus(["eng_Latn", "fra_Latn", "hin_Deva"], 40))
    return write_config(folder, shard_rows=40, sources=[
        {"name": "sib", "path": str(folder / "in" / "*.jsonl"), "label_column": "label"}], **overrides)


def _shards(run_dir: Path, stage: str) -> dict[str, list]:
    return {p.name: pq.read_table(p, columns=["id", "text", "lang"]).to_pylist()
            for p in sorted((run_dir / stage).glob("part-*.parquet"))}


@pytest.mark.slow
def test_served_deployments_run_on_schedule_settings_and_warn_on_drift(api_url, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    config = _config(tmp_path, schedule={"name": "nightly", "curate": "0 2 * * *", "harvest": None,
                                         "timezone": "Europe/Paris", "drift_threshold": 0.1})
    env = {**os.environ, "PREFECT_API_URL": api_url}
    serve = subprocess.Popen([str(Path(sys.executable).parent / "curate"), "serve", str(config)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
            deadline = time.monotonic() + 120
            while len(client.read_deployments()) < 4 and time.monotonic() < deadline:  # served one by one
                assert serve.poll() is None, serve.stdout.read()
                time.sleep(1)
            deployments = {client.read_flow(d.flow_id).name: d for d in client.read_deployments()}
            assert set(deployments) == {"curate", "al-round", "harvest", "mix-and-export"}
            nightly = deployments["curate"]
            assert nightly.name == "nightly" and [s.schedule.cron for s in nightly.schedules] == ["0 2 * * *"]
            assert nightly.schedules[0].schedule.timezone == "Europe/Paris"
            assert deployments["harvest"].schedules == [] and deployments["al-round"].parameters["push"] is True

            first = run_deployment("curate/nightly", timeout=300, poll_interval=2)
            assert first.state.is_completed(), first.state
            run_dir = Path(load_config(config).run_dir)
            assert sum(len(rows) for rows in _shards(run_dir, "near_dedup").values()) == 120
            # The next night's input is mostly Hindi and goes to a new run directory: the second run warns.
            write_jsonl(tmp_path / "in" / "more.jsonl", sib_corpus(["hin_Deva"], 150)[40:])
            config.write_text(config.read_text().replace(str(run_dir), str(run_dir) + "-night-2"))
            second = run_deployment("curate/nightly", timeout=300, poll_interval=2)
            assert second.state.is_completed(), second.state
            drift = [a.data for a in client.read_artifacts() if (a.key or "").endswith("-drift")]
    finally:
        serve.terminate()
        serve.wait(30)
    assert len(drift) == 1 and "**Warning: language drift.**" in drift[0] and "hin_Deva 33.3% → " in drift[0]


def test_two_flows_never_hold_one_run_directory_at_once_and_a_killed_holder_frees_it(tmp_path):
    from flows.locks import run_dir_lock

    config = load_config(_config(tmp_path))
    events: list[tuple[str, str]] = []

    def hold(name: str) -> None:
        with run_dir_lock(config):
            events.append((name, "in"))
            time.sleep(1.5)
            events.append((name, "out"))

    threads = [threading.Thread(target=hold, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert [kind for _, kind in events] == ["in", "out", "in", "out"], events
    assert events[0][0] == events[1][0] != events[2][0]

    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from curation.config import load_config; "
                               "from flows.locks import run_dir_lock\n"
                               f"with run_dir_lock(load_config({str(_config(tmp_path))!r})):\n"
                               "    print('held', flush=True); time.sleep(600)"], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    holder.kill()
    holder.wait()
    started = time.monotonic()
    with run_dir_lock(config):
        assert time.monotonic() - started < 5  # freed at once by the holder's death


@pytest.mark.slow
def test_curate_on_a_two_worker_dask_cluster_writes_the_same_shards(api_url, tmp_path):
    from flows.curate import curate

    write_jsonl(tmp_path / "in" / "tweets.jsonl", xlmt_rows("spanish", 60) + xlmt_rows("arabic", 60))
    results = {}
    for runner in ("threads", "dask"):
        folder = tmp_path / runner
        write_jsonl(folder / "in" / "sib.jsonl", sib_corpus(["eng_Latn", "spa_Latn", "zho_Hans"], 50) * 2)
        config = write_config(folder, shard_rows=50, runner={"task_runner": runner, "workers": 2}, sources=[
            {"name": "sib", "path": str(folder / "in" / "sib.jsonl"), "label_column": "label"},
            {"name": "tweets", "path": str(tmp_path / "in" / "tweets.jsonl"), "label_column": "label"}])
        with temporary_settings({PREFECT_API_URL: api_url}):
            curate(str(config))
        results[runner] = {stage: _shards(folder / "run", stage) for stage in ("lid", "exact_dedup", "near_dedup")}
    assert results["dask"] == results["threads"]
    assert len(results["dask"]["near_dedup"]) > 1 and sum(map(len, results["dask"]["near_dedup"].values())) < 390


def test_schedule_settings_are_checked_up_front(tmp_path):
    from curation.config import ConfigError

    for schedule, message in [({"curate": "nightly"}, "not a cron line"), ({"timezone": "Mars/Base"}, "time zone")]:
        with pytest.raises(ConfigError, match=message):
            load_config(_config(tmp_path, schedule=schedule))


def test_daemons_know_their_own_redis_after_it_rewrites_its_title_and_never_signal_a_reused_pid(tmp_path):
    """Redis wipes its environ and rewrites its command line when it sets its process title; it must
    still be ours from its first moment to its stop. A pid file naming another process (a reused pid)
    must never be signalled."""
    from annotators.local_server import LocalArgilla

    daemons, port = Daemons(tmp_path, "test"), free_ports(1)[0]
    redis = LocalArgilla(tmp_path / "argilla").redis_binary()
    daemons.spawn("redis", [redis, "--port", str(port), "--bind", "127.0.0.1", "--save", ""], dict(os.environ))
    pids = set()
    for _ in range(40):  # the title is rewritten during start-up
        pids.add(daemons.pid("redis"))
        time.sleep(0.05)
    assert len(pids) == 1 and None not in pids
    daemons.stop("redis", timeout=10)
    assert daemons.pid("redis") is None and not alive(pids.pop())

    (tmp_path / "run" / "stranger.pid").write_text(f"{os.getpid()} 1")  # alive, but started at another time
    assert daemons.pid("stranger") is None
    daemons.stop("stranger")
    assert alive(os.getpid())
