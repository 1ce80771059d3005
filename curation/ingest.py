"""Ingest: read every source file in streaming chunks, validate, normalise, give each row its id.

Each input file becomes shards ``part-FFFFF-CCCCC`` of at most `shard_rows` input rows, so memory
is bounded by one shard whatever the corpus size. Bad rows go to the shard's quarantine file.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import fsspec
import pyarrow as pa

from curation.config import ConfigError, CurateConfig, SourceConfig, expand_source, is_local
from curation.normalize import normalize_text
from curation.readers import RawRow, columns_of, read_rows
from curation.schema import QUARANTINE_SCHEMA, RECORD_SCHEMA, Reason, record_id, text_hash
from curation.shards import STATS_DIR, ShardStats, atomic_write_json, commit_shard, read_shard_stats

STAGE = "ingest"


@dataclass(frozen=True)
class InputFile:
    index: int
    source: SourceConfig
    path: str
    rel: str  # path relative to the source root: what source keys name

    def fingerprint(self) -> str:
        """Size and modification time: a changed input file invalidates cached ingest results."""
        fs, path = fsspec.core.url_to_fs(self.path, **self.source.fs_options())
        info = fs.info(path)
        return f"{info.get('size')}:{info.get('mtime') or info.get('LastModified') or info.get('updated')}"


def _source_root(source: SourceConfig) -> str:
    """The folder that source keys are relative to: the glob's fixed prefix, the folder, or the parent."""
    path = source.path.rstrip("/")
    wildcard = min((path.find(c) for c in "*?[" if c in path), default=-1)
    if wildcard >= 0:
        return path[:wildcard].rsplit("/", 1)[0]
    fs, local = fsspec.core.url_to_fs(path, **source.fs_options())
    return path if fs.isdir(local) else path.rsplit("/", 1)[0]


def input_files(config: CurateConfig) -> list[InputFile]:
    """Every input file of every source, in a stable order that numbers the shards."""
    files = []
    for source in config.sources:
        root = _source_root(source)
        for path in expand_source(source):
            rel = path[len(root):].lstrip("/") if path.startswith(root) and path != root else Path(path).name
            files.append(InputFile(len(files), source, path, rel))
    return files


def check_inputs(config: CurateConfig) -> list[InputFile]:
    """Every source has readable files with the configured columns; the LID model exists."""
    files = input_files(config)
    for source in config.sources:
        own = [f for f in files if f.source.name == source.name]
        if not own:
            raise ConfigError(f"source {source.name!r}: no input found at {source.path!r}")
        columns = columns_of(source, own[0].path)
        wanted = [source.text_column, source.id_column, source.label_column, *source.metadata_columns]
        missing = [c for c in wanted if c and columns is not None and c not in columns]
        if missing:
            raise ConfigError(f"source {source.name!r}: columns {missing} not in {own[0].path} "
                              f"(it has {columns})")
    model = config.lid.model_path
    if model and is_local(model) and not Path(model).is_file():
        raise ConfigError(f"lid.model_path not found: {model}")
    return files


def _validate(row: RawRow, source: str, max_chars: int) -> tuple[dict | None, tuple[str, str] | None]:
    """A record dict, or a (reason, detail) for quarantine."""
    if row.error:
        return None, row.error
    if row.text is None:
        return None, (Reason.MISSING_TEXT, "text is null")
    if not isinstance(row.text, str):
        return None, (Reason.WRONG_TYPE, f"text is {type(row.text).__name__}, not a string")
    if len(row.text) > max_chars:
        return None, (Reason.TOO_LONG, f"{len(row.text)} characters > max_text_chars {max_chars}")
    normalised = normalize_text(row.text)
    if not normalised:
        return None, (Reason.EMPTY_TEXT, "empty or whitespace-only after normalisation")
    key = row.source_key if row.id_value is None else str(row.id_value)
    return {
        "id": record_id(source, key, normalised),
        "text": row.text,
        "source": source,
        "source_key": key,
        "label": None if row.label is None else str(row.label),
        "meta": json.dumps(row.meta or {}, ensure_ascii=False, default=str, sort_keys=True),
        "norm_hash": text_hash(normalised),
        "n_chars": len(row.text),
    }, None


def _chunks(rows: Iterator[RawRow], size: int) -> Iterator[list[RawRow]]:
    while chunk := list(islice(rows, size)):
        yield chunk


def shard_name(file_index: int, chunk: int) -> str:
    return f"part-{file_index:05d}-{chunk:05d}"


def ingest_file(file: InputFile, config: CurateConfig, stage_dir: Path) -> list[ShardStats]:
    """Ingest one input file into committed shards. Rerunning rewrites the same shards."""
    stats = []
    rows = read_rows(file.source, file.path, file.rel, config.max_text_chars)
    for chunk_index, chunk in enumerate(_chunks(rows, config.shard_rows)):
        records, quarantined = [], []
        for row in chunk:
            record, problem = _validate(row, file.source.name, config.max_text_chars)
            if record:
                records.append(record)
            else:
                quarantined.append({"source": file.source.name, "source_key": row.source_key,
                                    "reason": problem[0], "detail": problem[1], "raw": row.raw})
        shard = ShardStats(STAGE, shard_name(file.index, chunk_index), rows_in=len(chunk), kept=len(records),
                           quarantined=dict(Counter(q["reason"] for q in quarantined)))
        stats.append(commit_shard(stage_dir, shard, pa.Table.from_pylist(records, RECORD_SCHEMA), None,
                                  pa.Table.from_pylist(quarantined, QUARANTINE_SCHEMA), config.row_group_rows))
    if not stats:  # an empty file still leaves a (zero-row) shard, so the file is marked done
        shard = ShardStats(STAGE, shard_name(file.index, 0), rows_in=0, kept=0)
        stats.append(commit_shard(stage_dir, shard, RECORD_SCHEMA.empty_table(), None, None,
                                  config.row_group_rows))
    atomic_write_json(_file_marker(file, stage_dir), {"path": file.path, "shards": [s.shard for s in stats]})
    return stats


def _file_marker(file: InputFile, stage_dir: Path) -> Path:
    return stage_dir / STATS_DIR / "files" / f"{file.index:05d}.json"


def ingested_shards(file: InputFile, stage_dir: Path) -> list[ShardStats] | None:
    """The committed shards of a file whose ingest finished, else None."""
    marker = _file_marker(file, stage_dir)
    if not marker.exists():
        return None
    return [read_shard_stats(stage_dir, shard) for shard in json.loads(marker.read_text())["shards"]]
