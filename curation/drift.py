"""Language drift between runs: each run's language distribution is appended to a history file and
compared with the previous entry of the same deployment (total variation distance of the shares)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path


def shares(counts: dict[str, int]) -> dict[str, float]:
    total = sum(counts.values())
    return {lang: n / total for lang, n in counts.items()} if total else {}


def compare(previous: dict[str, int], current: dict[str, int]) -> dict:
    """Total variation distance (0: same shares, 1: disjoint) and every language's change, largest first."""
    before, after = shares(previous), shares(current)
    langs = sorted(set(before) | set(after))
    moved = [{"lang": lang, "previous_share": round(before.get(lang, 0.0), 4), "share": round(after.get(lang, 0.0), 4),
              "change": round(after.get(lang, 0.0) - before.get(lang, 0.0), 4)} for lang in langs]
    return {"total_variation": round(sum(abs(m["change"]) for m in moved) / 2, 4),
            "languages": sorted(moved, key=lambda m: -abs(m["change"]))}


def record(history: Path, deployment: str, counts: dict[str, int]) -> dict | None:
    """Append this run's counts to `history` (JSON lines); return the comparison with the deployment's
    previous run, or None for its first."""
    entries = [json.loads(line) for line in history.read_text().splitlines()] if history.exists() else []
    previous = next((e for e in reversed(entries) if e["deployment"] == deployment), None)
    history.parent.mkdir(parents=True, exist_ok=True)
    with history.open("a") as f:
        f.write(json.dumps({"deployment": deployment, "at": datetime.now(UTC).isoformat(), "languages": counts}) + "\n")
    return None if previous is None else {"previous_at": previous["at"], **compare(previous["languages"], counts)}
