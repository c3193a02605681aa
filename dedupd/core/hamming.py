"""Vectorised Hamming search over uint64 hash arrays (numpy ``bitwise_count``).

Measured against the BK-tree (``bench/bench_search.py``): for the all-pairs job of
``find_duplicates`` a chunked popcount scan wins at every size we tried, because the tree must
visit a large share of its nodes at the usual radius of 10 on 64 bits. The BK-tree is kept for the
daemon's incremental single queries.
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


def iter_pairs(hashes: np.ndarray, radius: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Every pair ``i < j`` with ``hamming(hashes[i], hashes[j]) <= radius``, in blocks.

    Runs the multi-index self-join (:func:`dedupd.core.mih.self_join`) when its cost model beats
    the scan (:func:`scan_pairs`), else the scan. Yields ``(i, j, distance)`` int64 arrays
    (possibly empty); each pair exactly once, blocks in no particular order.
    """
    hashes = np.ascontiguousarray(hashes, dtype=np.uint64)
    plan = mih.best_plan(len(hashes), radius)
    if plan is None:
        yield from scan_pairs(hashes, radius)
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


def all_pairs(hashes: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair ``i < j`` with ``hamming(hashes[i], hashes[j]) <= radius``: ``(i, j, distance)``
    int64 arrays sorted by ``(i, j)``."""
    parts = list(iter_pairs(hashes, radius))
    if not parts:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty.copy(), empty.copy()
    i, j, d = (np.concatenate([p[k] for p in parts]).astype(np.int64) for k in range(3))
    order = np.lexsort((j, i))
    return i[order], j[order], d[order]
