"""The all-pairs searches on a Ray cluster: one task per tile of the pair matrix.

The input (a hash column, or the unit embedding rows) is put in Ray's object store once and every
task reads it from there; each task returns its tile's pairs (:mod:`dedupd.core.blocks`) and the
driver merges them into exactly the pairs of the one-machine search, sorted by ``(i, j)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dedupd.core.blocks import Pairs, cosine_tile, hamming_tile, merge, tiles
from dedupd.engines.ray_runtime import stream

#: Tile edges: a hash tile is 16k x 16k popcounts (about 0.3 s), a vector tile 4k x 4k dot products.
HASH_TILE = 16384
VECTOR_TILE = 4096


def hamming_pairs(ray: Any, values: np.ndarray, radius: int, *, tile: int = HASH_TILE) -> Pairs:
    """Every pair ``i < j`` with Hamming distance ``<= radius``, as :func:`dedupd.core.hamming.all_pairs`."""
    values = np.ascontiguousarray(values, dtype=np.uint64)
    ref = ray.put(values)
    parts = [res for _, res in stream(ray, hamming_tile, ((ref, radius, t) for t in tiles(len(values), tile)))]
    return merge(parts)


def cosine_pairs(ray: Any, unit: np.ndarray, threshold: float, *, tile: int = VECTOR_TILE) -> Pairs:
    """Every pair ``i < j`` of unit rows with similarity ``>= threshold``, as
    :func:`dedupd.core.vectors.cosine_pairs` with ``normalized=True``."""
    unit = np.ascontiguousarray(unit)
    ref = ray.put(unit)
    parts = [res for _, res in stream(ray, cosine_tile, ((ref, threshold, t) for t in tiles(len(unit), tile)))]
    return merge(parts, unit.dtype)
