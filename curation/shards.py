"""Run-directory layout, atomic Parquet shards, per-shard stats, manifests.

Layout of a run directory::

    <run_dir>/run.json                      config fingerprint (a run dir belongs to one config)
    <run_dir>/<stage>/part-FFFFF-CCCCC.parquet   kept rows (FFFFF: input file, CCCCC: chunk)
    <run_dir>/<stage>/dropped/<shard>.parquet    dropped rows with `drop_reason` and `dup_of`
    <run_dir>/<stage>/quarantine/<shard>.parquet bad input rows with a machine-readable `reason`
    <run_dir>/<stage>/_stats/<shard>.json        per-shard stats, written last: the shard's commit mark
    <run_dir>/<stage>/_work/                     global-stage state (hash indexes, signatures, plans)
    <run_dir>/<stage>/manifest.json              rows, bytes and sha256 of every file of the stage
    <run_dir>/<stage>/stats.json                 totals, per-language counts, drop/quarantine reasons
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

STATS_DIR = "_stats"
WORK_DIR = "_work"


class ConservationError(RuntimeError):
    """A stage lost or invented rows."""


@dataclass
class ShardStats:
    stage: str
    shard: str
    rows_in: int
    kept: int
    dropped: dict[str, int] = field(default_factory=dict)
    quarantined: dict[str, int] = field(default_factory=dict)
    languages: dict[str, int] = field(default_factory=dict)

    def check(self) -> ShardStats:
        accounted = self.kept + sum(self.dropped.values()) + sum(self.quarantined.values())
        if accounted != self.rows_in:
            raise ConservationError(
                f"{self.stage}/{self.shard}: rows in {self.rows_in} != kept {self.kept} + dropped "
                f"{self.dropped} + quarantined {self.quarantined}")
        return self


def _temp_path(path: Path) -> Path:
    """A hidden sibling unique to this process and thread: rename onto `path` is atomic."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = _temp_path(path)
    tmp.write_bytes(data)
    os.replace(tmp, path)


def atomic_write_json(path: Path, obj: object) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False).encode())


def write_parquet(path: Path, table: pa.Table, row_group_rows: int) -> None:
    """Write to a temp file in the same folder, then rename: readers never see half a shard."""
    tmp = _temp_path(path)
    # An empty table is written with no row group at all: readers such as `datasets` reject
    # a row group of zero rows.
    with pq.ParquetWriter(tmp, table.schema, compression="zstd") as writer:
        if table.num_rows:
            writer.write_table(table, row_group_size=row_group_rows)
    os.replace(tmp, path)


def shard_files(stage_dir: Path) -> list[Path]:
    """Committed kept shards of a stage, in name order (a shard is committed once its stats exist)."""
    stats = stage_dir / STATS_DIR
    return [stage_dir / f"{p.stem}.parquet" for p in sorted(stats.glob("part-*.json"))
            if (stage_dir / f"{p.stem}.parquet").exists()]


def read_shard_stats(stage_dir: Path, shard: str) -> ShardStats | None:
    path = stage_dir / STATS_DIR / f"{shard}.json"
    if not path.exists():
        return None
    return ShardStats(**json.loads(path.read_text()))


def commit_shard(stage_dir: Path, stats: ShardStats, kept: pa.Table, dropped: pa.Table | None,
                 quarantined: pa.Table | None, row_group_rows: int) -> ShardStats:
    """Write a shard's outputs, then its stats file, which marks the shard done."""
    stats.check()
    write_parquet(stage_dir / f"{stats.shard}.parquet", kept, row_group_rows)
    for sub, table in (("dropped", dropped), ("quarantine", quarantined)):
        if table is not None and table.num_rows:
            write_parquet(stage_dir / sub / f"{stats.shard}.parquet", table, row_group_rows)
    atomic_write_json(stage_dir / STATS_DIR / f"{stats.shard}.json", asdict(stats))
    return stats


def language_counts(table: pa.Table) -> dict[str, int]:
    if "lang" not in table.column_names:
        return {}
    counts = table.column("lang").value_counts().to_pylist()
    return {c["values"]: c["counts"] for c in counts}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _file_entry(path: Path, root: Path) -> dict:
    return {"path": str(path.relative_to(root)), "rows": pq.ParquetFile(path).metadata.num_rows,
            "bytes": path.stat().st_size, "sha256": sha256_file(path)}


def finalize_stage(stage_dir: Path, stage: str, shards: list[str]) -> dict:
    """Aggregate per-shard stats into stats.json and list every file in manifest.json."""
    per_shard = [read_shard_stats(stage_dir, s) for s in shards]
    missing = [s for s, st in zip(shards, per_shard) if st is None]
    if missing:
        raise RuntimeError(f"{stage}: shards not committed: {missing[:5]}")
    totals = {"rows_in": 0, "kept": 0}
    dropped, quarantined, languages = Counter(), Counter(), Counter()
    for st in per_shard:
        totals["rows_in"] += st.rows_in
        totals["kept"] += st.kept
        dropped.update(st.dropped)
        quarantined.update(st.quarantined)
        languages.update(st.languages)
    stats = {"stage": stage, "shards": len(shards), **totals, "dropped": dict(dropped),
             "quarantined": dict(quarantined), "languages": dict(sorted(languages.items()))}
    ShardStats(stage, "*", totals["rows_in"], totals["kept"], dict(dropped), dict(quarantined)).check()
    files = {sub: [_file_entry(stage_dir / sub / f"{s}.parquet", stage_dir) for s in shards
                   if (stage_dir / sub / f"{s}.parquet").exists()]
             for sub in ("dropped", "quarantine")}
    manifest = {"stage": stage, "shards": [_file_entry(stage_dir / f"{s}.parquet", stage_dir) for s in shards],
                **files}
    atomic_write_json(stage_dir / "manifest.json", manifest)
    atomic_write_json(stage_dir / "stats.json", stats)
    return stats
