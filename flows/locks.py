"""One flow at a time per run directory, across deployments, workers and machines that share the
Prefect API: curate, al-round, harvest and mix-and-export all write under the run directory."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import xxhash
from prefect.client.orchestration import get_client
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists

from curation.config import CurateConfig


def lock_name(config: CurateConfig) -> str:
    return f"run-dir-{xxhash.xxh3_64_hexdigest(str(Path(config.run_dir).resolve()).encode())}"


@contextmanager
def run_dir_lock(config: CurateConfig) -> Iterator[None]:
    """Hold the run directory's global concurrency slot (limit 1); a second flow waits for it."""
    name = lock_name(config)
    with get_client(sync_client=True) as client, suppress(ObjectAlreadyExists):  # another flow made it first
        client.upsert_global_concurrency_limit_by_name(name, 1)
    with concurrency(name, occupy=1, strict=True):
        yield
