"""Streaming readers: every input format becomes an iterator of `RawRow`, one row at a time.

Readers never raise on bad rows: a row that cannot be read carries an `error` and goes to
quarantine. Only an unreadable file (missing, not the promised format) raises `ConfigError`.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import fsspec
import pyarrow.parquet as pq

from curation.config import ConfigError, SourceConfig
from curation.schema import Reason

RAW_PREVIEW_CHARS = 2000
_BATCH_ROWS = 2048

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


@dataclass(slots=True)
class RawRow:
    source_key: str
    text: object = None
    id_value: object = None
    label: object = None
    meta: dict | None = None
    error: tuple[str, str] | None = None  # (reason, detail)
    raw: str = ""


def preview(value: object) -> str:
    """A printable, truncated copy of bad input (undecodable bytes shown as \\xNN escapes)."""
    text = value if isinstance(value, str) else repr(value)
    return text[:RAW_PREVIEW_CHARS].encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _from_mapping(source: SourceConfig, key: str, row: dict) -> RawRow:
    if source.text_column not in row:
        return RawRow(key, error=(Reason.MISSING_TEXT, f"no {source.text_column!r} field"), raw=preview(row))
    return RawRow(
        key,
        text=row[source.text_column],
        id_value=row.get(source.id_column) if source.id_column else None,
        label=row.get(source.label_column) if source.label_column else None,
        meta={c: row.get(c) for c in source.metadata_columns},
        raw=preview(row.get(source.text_column)),
    )


def _open(source: SourceConfig, path: str, mode: str = "rb"):
    return fsspec.open(path, mode, compression="infer", **source.fs_options())


def read_jsonl(source: SourceConfig, path: str, rel: str) -> Iterator[RawRow]:
    with _open(source, path) as f:
        for line_no, line in enumerate(f, 1):
            key = f"{rel}:{line_no}"
            if not line.strip():
                continue  # a blank line is not a record
            try:
                decoded = line.decode("utf-8")
            except UnicodeDecodeError as err:
                yield RawRow(key, error=(Reason.INVALID_UTF8, str(err)),
                             raw=line.decode("utf-8", "backslashreplace")[:RAW_PREVIEW_CHARS])
                continue
            try:
                row = json.loads(decoded)
            except json.JSONDecodeError as err:
                yield RawRow(key, error=(Reason.MALFORMED, f"invalid JSON: {err}"), raw=preview(decoded))
                continue
            if not isinstance(row, dict):
                yield RawRow(key, error=(Reason.MALFORMED, "JSON line is not an object"), raw=preview(decoded))
                continue
            yield _from_mapping(source, key, row)


def read_csv(source: SourceConfig, path: str, rel: str, delimiter: str) -> Iterator[RawRow]:
    with _open(source, path) as raw_file:
        text = io.TextIOWrapper(raw_file, encoding="utf-8", errors="surrogateescape", newline="")
        reader = csv.reader(text, delimiter=delimiter)
        header = next(reader, None)
        if header is None:
            return
        row_no = 1
        while True:
            row_no += 1
            key = f"{rel}:{row_no}"
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as err:
                yield RawRow(key, error=(Reason.MALFORMED, f"CSV error: {err}"))
                continue
            joined = delimiter.join(fields)
            if not _is_utf8(joined):
                yield RawRow(key, error=(Reason.INVALID_UTF8, "row is not valid UTF-8"), raw=preview(joined))
                continue
            if len(fields) != len(header):
                yield RawRow(key, error=(Reason.MALFORMED, f"{len(fields)} fields, header has {len(header)}"),
                             raw=preview(joined))
                continue
            yield _from_mapping(source, key, dict(zip(header, fields)))


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates left by errors="surrogateescape"
        return False
    return True


def read_parquet(source: SourceConfig, path: str, rel: str) -> Iterator[RawRow]:
    with _open(source, path) as f:
        parquet = pq.ParquetFile(f)
        wanted = {source.text_column, source.id_column, source.label_column, *source.metadata_columns}
        columns = [c for c in parquet.schema_arrow.names if c in wanted]
        row_no = 0
        for batch in parquet.iter_batches(batch_size=_BATCH_ROWS, columns=columns):
            for row in batch.to_pylist():
                row_no += 1
                yield _from_mapping(source, f"{rel}:{row_no}", row)


def read_text(source: SourceConfig, path: str, rel: str, max_bytes: int) -> Iterator[RawRow]:
    with _open(source, path) as f:
        if source.text_mode == "file":
            data = f.read(max_bytes + 1)
            yield _decoded_text_row(rel, data)
            return
        for line_no, line in enumerate(f, 1):
            yield _decoded_text_row(f"{rel}:{line_no}", line.rstrip(b"\r\n"))


def _decoded_text_row(key: str, data: bytes) -> RawRow:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        return RawRow(key, error=(Reason.INVALID_UTF8, str(err)),
                      raw=data.decode("utf-8", "backslashreplace")[:RAW_PREVIEW_CHARS])
    return RawRow(key, text=text, meta={}, raw=preview(text))


def read_hf_dataset(source: SourceConfig, path: str) -> Iterator[RawRow]:
    import datasets

    dataset = datasets.load_from_disk(path, storage_options=source.fs_options() or None)
    if isinstance(dataset, datasets.DatasetDict):
        raise ConfigError(f"source {source.name!r}: {path} is a DatasetDict; point `path` at one split")
    row_no = 0
    for batch in dataset.iter(batch_size=_BATCH_ROWS):
        names = list(batch)
        for values in zip(*batch.values()):
            row_no += 1
            yield _from_mapping(source, f"row:{row_no}", dict(zip(names, values)))


def read_rows(source: SourceConfig, path: str, rel: str, max_text_chars: int) -> Iterator[RawRow]:
    """Rows of one input file of `source`; `rel` names the file in source keys."""
    fmt = source.format_of(path)
    if fmt == "jsonl":
        return read_jsonl(source, path, rel)
    if fmt in ("csv", "tsv"):
        return read_csv(source, path, rel, "," if fmt == "csv" else "\t")
    if fmt == "parquet":
        return read_parquet(source, path, rel)
    if fmt == "text":
        return read_text(source, path, rel, max_text_chars * 4)
    return read_hf_dataset(source, path)


def columns_of(source: SourceConfig, path: str) -> list[str] | None:
    """The column names a structured file offers (None for plain text and JSONL, which vary by row)."""
    fmt = source.format_of(path)
    try:
        if fmt in ("csv", "tsv"):
            with _open(source, path) as f:
                line = io.TextIOWrapper(f, encoding="utf-8", errors="replace", newline="").readline()
            return next(csv.reader([line], delimiter="," if fmt == "csv" else "\t"), [])
        if fmt == "parquet":
            with _open(source, path) as f:
                return pq.ParquetFile(f).schema_arrow.names
        if fmt == "hf_dataset":
            import datasets

            return list(datasets.load_from_disk(path).features)
    except (OSError, ValueError) as err:
        raise ConfigError(f"source {source.name!r}: cannot read {path}: {err}") from err
    return None
