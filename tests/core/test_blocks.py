"""The tiled all-pairs searches (what Ray tasks run) give exactly the one-machine pairs."""

from __future__ import annotations

import numpy as np
import pytest

from dedupd.core import hamming
from dedupd.core.blocks import cosine_tile, hamming_tile, merge, tiles
from dedupd.core.vectors import cosine_pairs, normalize_rows


@pytest.mark.parametrize("n, size", [(0, 4), (1, 4), (10, 3), (10, 10), (37, 8), (37, 100)])
def test_tiles_cover_every_pair_once(n: int, size: int) -> None:
    seen = [(i, j) for a0, a1, b0, b1 in tiles(n, size) for i in range(a0, a1) for j in range(b0, b1) if i < j]
    assert sorted(seen) == [(i, j) for i in range(n) for j in range(i + 1, n)]


@pytest.mark.parametrize("size", [3, 7, 64, 1000])
def test_hamming_tiles_equal_all_pairs(size: int) -> None:
    rng = np.random.default_rng(size)
    values = rng.integers(0, 2**63, 300, dtype=np.uint64)
    values[::4] = values[0] ^ np.uint64(0b1011)  # clusters of near copies
    for radius in (0, 3, 12):
        want = hamming.all_pairs(values, radius)
        got = merge([hamming_tile(values, radius, t) for t in tiles(len(values), size)])
        assert all(np.array_equal(w, g) for w, g in zip(want, got)), radius
        assert len(want[0]) > 0


@pytest.mark.parametrize("size", [5, 64, 1000])
def test_cosine_tiles_equal_cosine_pairs(size: int) -> None:
    rng = np.random.default_rng(size)
    x = rng.normal(size=(200, 16)).astype(np.float32)
    x[::3] = x[1] + 0.05 * x[2]
    unit = normalize_rows(x)
    for threshold in (0.2, 0.9):
        want = cosine_pairs(unit, threshold, normalized=True)
        got = merge([cosine_tile(unit, threshold, t) for t in tiles(len(unit), size)], unit.dtype)
        assert all(np.array_equal(w, g) for w, g in zip(want, got)) and len(want[0]) > 0
        assert got[2].dtype == np.float32
