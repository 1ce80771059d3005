"""Near-duplicate removal: MinHash signatures, LSH banding, verified edges, connected components.

* Shingles: word n-grams for scripts written with spaces, character n-grams for scripts written
  without them (Han, kana, Thai, Lao, Khmer, Burmese, Tibetan), on the normalised, lower-cased text.
* Signatures: one vectorised multiply-shift hash family over a whole batch (`num_perm` values).
* Candidates: documents sharing any of `bands` band hashes. Banding is set for recall (16×8 puts
  the S-curve's midpoint near 0.7), and each candidate pair is then verified: its estimated
  Jaccard (share of equal signature values) must reach `threshold`. So recall near the threshold
  comes from the banding and precision from the verification.
* Clusters: connected components of the verified pairs; the keep policy picks one per cluster.

Scale: signatures and band hashes are spilled per shard to `_work/index/`. Candidates are then found
band by band, each band an independent step (`bucket`, run in parallel by the executor) holding
one 8-byte hash per document and writing its candidate pairs to `_work/pairs/`. The plan merges
the pairs, verifies them against signatures read from a memory-mapped file, and clusters.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import xxhash
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from curation.config import NearDedupConfig
from curation.normalize import normalize_text, words
from curation.schema import Reason
from curation.shards import atomic_write_json, write_parquet
from curation.stages import DedupStage, cluster_keepers

UNSPACED_SCRIPTS = {"Hans", "Hant", "Hani", "Jpan", "Hira", "Kana", "Thai", "Laoo", "Khmr", "Mymr", "Tibt"}
_SEED = 0x5EED
_EDGE_CHUNK = 50_000


def shingles(text: str, script: str, word_ngram: int, char_ngram: int) -> list[str]:
    """The shingle set of a text (at least one shingle, even for very short texts)."""
    normalised = normalize_text(text)
    if script in UNSPACED_SCRIPTS:
        chars = "".join(words(normalised))
        grams = {chars[i:i + char_ngram] for i in range(len(chars) - char_ngram + 1)}
        return sorted(grams) or [chars]
    tokens = words(normalised)
    grams = {" ".join(tokens[i:i + word_ngram]) for i in range(len(tokens) - word_ngram + 1)}
    return sorted(grams) or [" ".join(tokens)]


class MinHasher:
    """Vectorised MinHash: h_i(x) = (a_i·x + b_i mod 2^64) >> 32 over 32-bit shingle hashes."""

    def __init__(self, num_perm: int, seed: int = _SEED):
        rng = np.random.default_rng(seed)
        self.a = (rng.integers(0, 2**63, num_perm, dtype=np.uint64) << np.uint64(1)) | np.uint64(1)
        self.b = rng.integers(0, 2**63, num_perm, dtype=np.uint64)

    def signatures(self, shingle_sets: list[list[str]]) -> np.ndarray:
        """(documents × num_perm) uint32 signatures; every set must be non-empty."""
        lengths = np.fromiter((len(s) for s in shingle_sets), dtype=np.int64, count=len(shingle_sets))
        hashes = np.fromiter((xxhash.xxh32_intdigest(g.encode()) for s in shingle_sets for g in s),
                             dtype=np.uint64, count=int(lengths.sum()))
        offsets = np.concatenate(([0], np.cumsum(lengths)[:-1]))
        with np.errstate(over="ignore"):
            permuted = (self.a[:, None] * hashes[None, :] + self.b[:, None]) >> np.uint64(32)
        return np.minimum.reduceat(permuted, offsets, axis=1).T.astype(np.uint32)


def band_hashes(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(documents × bands) uint64: a 64-bit hash of each band's `rows` signature values."""
    view = np.ascontiguousarray(signatures[:, : bands * rows]).reshape(len(signatures), bands, rows)
    mixers = np.random.default_rng(_SEED + 1).integers(1, 2**63, rows, dtype=np.uint64) | np.uint64(1)
    with np.errstate(over="ignore"):
        combined = (view.astype(np.uint64) * mixers).sum(axis=2, dtype=np.uint64)
        combined ^= combined >> np.uint64(29)
        return combined * np.uint64(0xBF58476D1CE4E5B9)


def candidate_pairs(hashes: np.ndarray, max_bucket_pairs: int) -> np.ndarray:
    """Pairs (i < j) that share a bucket: all pairs in small buckets, a star in big ones."""
    order = np.argsort(hashes, kind="stable")
    sorted_hashes = hashes[order]
    starts = np.flatnonzero(np.r_[True, sorted_hashes[1:] != sorted_hashes[:-1]])
    sizes = np.diff(np.r_[starts, len(order)])
    pairs = []
    multi = sizes > 1
    # Star edges to each bucket's first member: connects every bucket whatever its size.
    member_bucket = np.repeat(np.arange(len(starts)), sizes)
    not_first = np.r_[False, sorted_hashes[1:] == sorted_hashes[:-1]]
    pairs.append(np.stack([order[starts[member_bucket[not_first]]], order[not_first]], axis=1))
    # All pairs in small buckets, so A~C is seen even when A and B (the first) are not verified alike.
    for start, size in zip(starts[multi & (sizes > 2)], sizes[multi & (sizes > 2)]):
        if size * (size - 1) // 2 > max_bucket_pairs:
            continue
        members = order[start:start + size]
        i, j = np.triu_indices(size, k=1)
        pairs.append(np.stack([members[i], members[j]], axis=1))
    edges = np.concatenate(pairs) if pairs else np.empty((0, 2), dtype=np.int64)
    return np.sort(edges, axis=1)


class NearDedupStage(DedupStage):
    name = "near_dedup"
    requires = ("id", "text", "script", "n_chars")
    reason = Reason.NEAR_DUPLICATE

    def __init__(self, stage_dir: Path, config: NearDedupConfig):
        super().__init__(stage_dir)
        self.config = config
        self.hasher = MinHasher(config.num_perm)

    def _scores(self, table: pa.Table) -> np.ndarray:
        if self.config.keep != "score":
            return np.zeros(table.num_rows)
        column = self.config.score_column
        return np.array([float(json.loads(m).get(column) or 0.0) for m in table.column("meta").to_pylist()])

    def index_shard(self, shard_path: Path) -> None:
        shard = shard_path.stem
        table = pq.read_table(shard_path, columns=["id", "text", "script", "n_chars", "meta"])
        c = self.config
        texts, scripts = table.column("text").to_pylist(), table.column("script").to_pylist()
        sigs = np.empty((table.num_rows, c.num_perm), dtype=np.uint32)
        for start in range(0, table.num_rows, c.batch_size):
            stop = start + c.batch_size
            sets = [shingles(t, s, c.word_ngram, c.char_ngram) for t, s in zip(texts[start:stop], scripts[start:stop])]
            sigs[start:stop] = self.hasher.signatures(sets)
        folder = self.work_dir / "index"
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / f"{shard}.sig.npy", sigs)
        np.save(folder / f"{shard}.bands.npy", band_hashes(sigs, c.bands, c.rows))
        meta = pa.table({"id": table.column("id"), "n_chars": table.column("n_chars"),
                         "score": pa.array(self._scores(table), pa.float64())})
        write_parquet(folder / f"{shard}.parquet", meta, max(meta.num_rows, 1))

    def _all_signatures(self, shards: list[str], total: int) -> np.ndarray:
        path = self.work_dir / "signatures.npy"
        merged = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint32, shape=(total, self.config.num_perm))
        start = 0
        for shard in shards:
            part = np.load(self.work_dir / "index" / f"{shard}.sig.npy", mmap_mode="r")
            merged[start:start + len(part)] = part
            start += len(part)
        merged.flush()
        return np.load(path, mmap_mode="r")

    def partitions(self) -> list[int]:
        return list(range(self.config.bands))

    def bucket(self, shards: list[str], part: int) -> None:
        """Candidate pairs of one band: documents whose hash of that band is equal."""
        band = np.concatenate([np.load(self.work_dir / "index" / f"{s}.bands.npy", mmap_mode="r")[:, part]
                               for s in shards])
        pairs = candidate_pairs(band, self.config.max_bucket_pairs) if len(band) else np.empty((0, 2), np.int64)
        folder = self.work_dir / "pairs"
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f"band-{part:03d}.tmp.npy"
        np.save(tmp, pairs[:, 0] * len(band) + pairs[:, 1])  # a pair (i, j) as one int64 key
        tmp.replace(folder / f"band-{part:03d}.npy")

    def _verified_edges(self, signatures: np.ndarray) -> tuple[np.ndarray, int]:
        n = len(signatures)
        keys = np.unique(np.concatenate(  # deduplicated across bands
            [np.load(self.work_dir / "pairs" / f"band-{b:03d}.npy") for b in self.partitions()]))
        candidates = np.stack([keys // n, keys % n], axis=1)
        keep = []
        for start in range(0, len(candidates), _EDGE_CHUNK):
            pairs = candidates[start:start + _EDGE_CHUNK]
            similarity = (signatures[pairs[:, 0]] == signatures[pairs[:, 1]]).mean(axis=1)
            keep.append(pairs[similarity >= self.config.threshold])
        edges = np.concatenate(keep) if keep else np.empty((0, 2), dtype=np.int64)
        return edges, len(candidates)

    def plan(self, shards: list[str]) -> dict:
        meta, shard_of = self.load_index(shards, ["id", "n_chars", "score"])
        n = meta.num_rows
        if n == 0:
            self.write_decisions(shards, shard_of, meta.column("id").combine_chunks(), pa.nulls(0, pa.string()))
            return {"rows": 0, "duplicates": 0}
        signatures = self._all_signatures(shards, n)
        edges, n_candidates = self._verified_edges(signatures)
        graph = coo_matrix((np.ones(len(edges), dtype=np.int8), (edges[:, 0], edges[:, 1])), shape=(n, n))
        _, cluster = connected_components(graph, directed=False)
        preference = {"longest": -meta.column("n_chars").to_numpy(), "score": -meta.column("score").to_numpy()}
        keeper = cluster_keepers(cluster, preference.get(self.config.keep))
        dups = np.flatnonzero(keeper != np.arange(n))
        ids = meta.column("id").combine_chunks()
        self.write_decisions(shards, shard_of[dups], ids.take(dups), ids.take(keeper[dups]))
        sizes = np.bincount(cluster)
        summary = {"rows": n, "candidate_pairs": int(n_candidates), "verified_pairs": len(edges),
                   "clusters_with_duplicates": int((sizes > 1).sum()), "duplicates": len(dups),
                   "largest_cluster": int(sizes.max()) if n else 0}
        atomic_write_json(self.work_dir / "plan.json", summary)
        (self.work_dir / "signatures.npy").unlink()
        return summary
