"""Vectorised Hamming search over uint64 hash arrays: all pairs within a radius, one query.

All pairs (``find_duplicates``, the daemon's graph build) run the multi-index-hashing self-join of
:mod:`dedupd.core.mih` whenever its cost model beats the popcount scan, else the scan. Measured with
``bench/bench_search.py`` on this project's 2-core machine under a load average of ~20 (other jobs;
wall times, same run; random hashes with 30 % planted near copies):

* 10k hashes, radius 0 / 4 / 8 / 10 / 12: MIH (numpy join) 4.7 / 19 / 75 / 111 / 102 ms; scan 1.6 / 1.6 / 1.1 /
  1.6 / 0.76 s; BK-tree 0.5 / 10 / 43 / 124 / 76 s; faiss ``IndexBinaryMultiHash`` (radius 10) 1.25 s.
* 100k hashes, radius 8 / 10 / 12 / 16: MIH (numpy join) 7.0 / 12.0 / 26.7 / 91 s; scan (a row block, scaled to
  all pairs) 155 / 123 / 163 / 90 s. In an earlier run at 100k, radius 10: faiss MultiHash 20 s,
  faiss flat range search 16 s, MIH 8.6 s. The compiled join (:func:`dedupd.core.mih.self_join_compiled`,
  same plans, later run at a load average of ~11): 0.13 / 0.26 / 0.20 / 0.72 s CPU.
* 1M hashes, radius 10 (``find_duplicates`` with scores in a child process): with the compiled
  join (numba) 4.8 s CPU, 14.9 s wall at a load average of ~11, peak RSS 609 MB of which 509 MB
  is the input dict (the numpy join: 39 s CPU, 824 MB); the scan would take ~30 min quiet. Of
  the CPU: the join 2.5-3.3 s (plan m=4, tolerances 2/2/2/1), the result map 1.2 s, loading the
  compiled join ~0.7 s.

faiss-cpu 1.15.1 (``IndexBinaryMultiHash`` with the same substrings and ``nflip = r // m``, one
thread) probes per query through hash maps: 10x slower than the numpy self-join at 10k, so no
dependency is added. At radius 16 on 64 bits MIH only breaks even with the scan at 100k (the ball
of flips per substring grows faster than the buckets shrink); from ~32 the scan always runs.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from dedupd.core import mih

#: Upper bound on elements of the temporary XOR block, bounding memory at ~8 bytes x this.
_BLOCK_ELEMENTS = 1 << 22


def distances(query: int, hashes: np.ndarray) -> np.ndarray:
    """Hamming distance of one hash to each element of ``hashes`` (uint8 array)."""
    return np.bitwise_count(hashes ^ np.uint64(query))


def within(query: int, hashes: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and distances of the hashes within ``radius`` of ``query``, in index order."""
    d = distances(query, hashes)
    idx = np.flatnonzero(d <= radius)
    return idx, d[idx].astype(np.int64)


def iter_pairs(
    hashes: np.ndarray, radius: int, *, compiled: bool | None = None
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Every pair ``i < j`` with ``hamming(hashes[i], hashes[j]) <= radius``, in blocks.

    Runs the multi-index self-join when its cost model beats the scan (:func:`scan_pairs`), else
    the scan. The join runs compiled (:func:`dedupd.core.mih.self_join_compiled`) when
    ``compiled`` is True, or None and :func:`dedupd.core.mih.use_compiled` says it pays; else in
    numpy (:func:`dedupd.core.mih.self_join`): the same pairs either way (True without numba
    raises RuntimeError). Yields ``(i, j, distance)`` int64 arrays (possibly empty); each pair exactly
    once, blocks in no particular order.
    """
    hashes = np.ascontiguousarray(hashes, dtype=np.uint64)
    plan = mih.best_plan(len(hashes), radius)
    if plan is None:
        yield from scan_pairs(hashes, radius)
    elif compiled or (compiled is None and mih.use_compiled(len(hashes), plan)):
        yield from mih.self_join_compiled(hashes, radius, plan)
    else:
        yield from mih.self_join(hashes, radius, plan)


def scan_pairs(hashes: np.ndarray, radius: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The popcount scan behind :func:`iter_pairs`: the upper triangle in row blocks, so the
    temporary never exceeds ``_BLOCK_ELEMENTS``; blocks come in row order."""
    hashes = np.ascontiguousarray(hashes, dtype=np.uint64)
    n = len(hashes)
    start = 0
    while start < n:
        rows = max(1, min(n - start, _BLOCK_ELEMENTS // max(1, n - start)))
        stop = start + rows
        block = np.bitwise_count(hashes[start:stop, None] ^ hashes[None, start:])
        # keep only the strict upper triangle of this block: column offset > row offset
        mask = block <= radius
        mask &= np.arange(n - start)[None, :] > np.arange(rows)[:, None]
        r, c = np.nonzero(mask)
        yield r + start, c + start, block[r, c].astype(np.int64)
        start = stop


def all_pairs(
    hashes: np.ndarray, radius: int, *, compiled: bool | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair ``i < j`` with ``hamming(hashes[i], hashes[j]) <= radius``: ``(i, j, distance)``
    int64 arrays sorted by ``(i, j)`` (``compiled`` as in :func:`iter_pairs`)."""
    parts = list(iter_pairs(hashes, radius, compiled=compiled))
    if not parts:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty.copy(), empty.copy()
    i, j, d = (np.concatenate([p[k] for p in parts]).astype(np.int64) for k in range(3))
    order = np.lexsort((j, i))
    return i[order], j[order], d[order]
