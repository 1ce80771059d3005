"""Peak memory of the calling process, for the benchmarks."""

from __future__ import annotations

from pathlib import Path


def peak_rss_mb() -> float:
    """VmHWM: this process's own peak resident set. (`ru_maxrss` is carried across exec, so a spawned
    child would report its parent's peak when that was higher.)"""
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0]) / 1024
