"""The all-pairs searches cut into independent tiles, for running them on many machines.

The upper triangle of the n x n pair matrix is cut into ``size x size`` tiles (row block a,
column block b >= a). Each tile is a pure function of the rows it touches, so tiles can run
anywhere in any order; the union of every tile's pairs is exactly what
:func:`dedupd.core.hamming.all_pairs` or :func:`dedupd.core.vectors.cosine_pairs` return for the
whole input (diagonal tiles call those functions themselves).
"""

from __future__ import annotations

import numpy as np

from dedupd.core import hamming
from dedupd.core.vectors import confirm_pairs, cosine_pairs, screen_margin

Pairs = tuple[np.ndarray, np.ndarray, np.ndarray]
#: Off-diagonal tiles are scanned in row strips of at most this many temporary elements.
_STRIP_ELEMENTS = 1 << 22
Tile = tuple[int, int, int, int]  # row start, row stop, column start, column stop


def tiles(n: int, size: int) -> list[Tile]:
    """The tiles ``(a0, a1, b0, b1)`` covering every pair ``i < j`` of ``n`` items once."""
    size = max(1, int(size))
    starts = range(0, n, size)
    return [(a, min(n, a + size), b, min(n, b + size)) for a in starts for b in starts if b >= a]


def _shift(pairs: Pairs, di: int, dj: int) -> Pairs:
    i, j, s = pairs
    return i + di, j + dj, s


def hamming_tile(values: np.ndarray, radius: int, tile: Tile) -> Pairs:
    """Pairs ``(i, j, distance)``, ``i < j``, of one tile with Hamming distance ``<= radius``."""
    a0, a1, b0, b1 = tile
    values = np.asarray(values, dtype=np.uint64)
    if a0 == b0:
        return _shift(hamming.all_pairs(values[a0:a1], radius), a0, a0)
    parts = []
    for s0, s1 in _strips(a0, a1, b1 - b0):
        d = np.bitwise_count(values[s0:s1, None] ^ values[None, b0:b1])
        r, c = np.nonzero(d <= radius)
        parts.append((r.astype(np.int64) + s0, c.astype(np.int64) + b0, d[r, c].astype(np.int64)))
    return merge(parts)


def cosine_tile(unit: np.ndarray, threshold: float, tile: Tile) -> Pairs:
    """Pairs ``(i, j, similarity)``, ``i < j``, of one tile of unit rows with similarity ``>= threshold``."""
    a0, a1, b0, b1 = tile
    if a0 == b0:
        return _shift(cosine_pairs(unit[a0:a1], threshold, normalized=True), a0, a0)
    parts = []
    for s0, s1 in _strips(a0, a1, b1 - b0):
        sims = unit[s0:s1] @ unit[b0:b1].T
        r, c = np.nonzero(sims >= threshold - screen_margin(unit.shape[1], unit.dtype))
        parts.append(confirm_pairs(unit, r.astype(np.int64) + s0, c.astype(np.int64) + b0, sims[r, c], threshold))
    return merge(parts, unit.dtype)


def _strips(a0: int, a1: int, width: int) -> list[tuple[int, int]]:
    rows = max(1, _STRIP_ELEMENTS // max(1, width))
    return [(s, min(a1, s + rows)) for s in range(a0, a1, rows)]


def merge(parts: list[Pairs], score_dtype: np.dtype | type = np.int64) -> Pairs:
    """The tiles' pairs as one ``(i, j, score)`` set sorted by ``(i, j)``."""
    parts = [p for p in parts if len(p[0])]
    if not parts:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty.copy(), np.empty(0, dtype=score_dtype)
    i, j, s = (np.concatenate([p[k] for p in parts]) for k in range(3))
    order = np.lexsort((j, i))
    return i[order], j[order], s[order]
