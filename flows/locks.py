"""One flow at a time per run directory: curate, al-round, annotate, harvest and mix-and-export all
write under it, whichever deployment, worker or shell started them.

An exclusive `flock` on `<run_dir>/.lock`: the kernel releases it the moment its holder exits,
killed or not, so a crashed run never blocks its rerun (a Prefect global concurrency limit keeps
a killed holder's slot until its lease lapses and a server reaper runs, which the ephemeral API
never does). It holds wherever the run directory is: on local disk, or on a shared filesystem
with working locks for runs started from several machines.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prefect.logging import get_logger

from curation.config import CurateConfig

logger = get_logger("curation.locks")


@contextmanager
def run_dir_lock(config: CurateConfig) -> Iterator[None]:
    """Hold the run directory's lock; a second flow waits for it (and says so)."""
    path = Path(config.run_dir) / ".lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.warning("another flow is writing %s: waiting for it to finish", config.run_dir)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
