"""Shared fixtures: real SIB-200 and XLM-T rows from ../shared/data, written as the tests need them."""

from __future__ import annotations

import csv
import json
import os
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
SIB = SHARED / "sib200"
sys.path.insert(0, str(ROOT / "bench"))  # shared planting helpers
XLMT = SHARED / "xlmt"

# Each test session gets its own Prefect home, so cached results never leak between sessions.
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="prefect-home-"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")


def pytest_collection_modifyitems(items):
    if not SIB.exists():
        skip = pytest.mark.skip(reason=f"real data not found at {SHARED}")
        for item in items:
            item.add_marker(skip)


def sib_rows(variety: str, split: str = "train", limit: int | None = None) -> list[dict]:
    with (SIB / variety / f"{split}.tsv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return rows[:limit]


def xlmt_rows(language: str, limit: int | None = None) -> list[dict]:
    texts = (XLMT / language / "train_text.txt").read_text(encoding="utf-8").splitlines()
    labels = (XLMT / language / "train_labels.txt").read_text().splitlines()
    return [{"text": t, "label": label} for t, label in zip(texts, labels)][:limit]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def sib_corpus(varieties: list[str], per_variety: int, split: str = "train") -> list[dict]:
    return [{"id": f"{v}/{r['index_id']}", "text": r["text"], "label": r["category"], "flores": v}
            for v in varieties for r in sib_rows(v, split, per_variety)]


def write_config(folder: Path, **overrides) -> Path:
    config = {"run_dir": str(folder / "run"), "shard_rows": 100, **overrides}
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def local_argilla(tmp_path_factory: pytest.TempPathFactory):
    """A real local Argilla (own venv, SQLite, Redis) in a temporary home on free ports, with an owner
    and two annotators; stopped at the end of the session."""
    import subprocess

    from annotators.local_server import LocalArgilla, free_ports

    port, redis_port = free_ports(2)
    server = LocalArgilla(tmp_path_factory.mktemp("argilla-home"), port=port, redis_port=redis_port,
                          annotators=("annotator", "annotator2"))
    try:
        server.ensure_venv()
        server.redis_binary()
    except (OSError, RuntimeError, subprocess.CalledProcessError) as error:
        pytest.skip(f"cannot set up the Argilla server venv or Redis here: {error}")
    try:
        yield server.up()
    finally:
        server.down()
