"""Approximate all-pairs cosine search for very large embedding sets (opt-in, ``ann`` extra).

Exact all-pairs (:func:`dedupd.core.vectors.cosine_pairs`) is O(n^2); at a million 576-d vectors
it takes hours on two cores. An approximate index finds most of the pairs in far less time:

``"ivf"``: faiss ``IndexIVFFlat`` (inner product): k-means cells, each vector range-searched in
the ``nprobe`` nearest cells. It finds every pair within a probed cell and misses pairs split
across cells it does not probe; a range search suits a similarity threshold (no neighbour cap).
Measured against hnswlib's HNSW graph (k nearest neighbours, then the threshold): at 20k vectors
with dense duplicate clusters HNSW with k = 32 found 13 % of the pairs where IVF found 88 %,
and was slower (bench/bench_cnn_scale.py, docs/benchmarks.md), so IVF is the one offered.

It returns a *subset* of the exact pairs: every candidate's score is recomputed from the
vectors exactly as the exact search does and kept only when ``>= threshold``, so no false pair
and no approximate score can come out. Recall against exact search (the fraction of exact pairs
found) is measured and printed by ``bench/bench_cnn_scale.py``; see docs/benchmarks.md.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from dedupd.core.vectors import Pairs, _check, _empty_pairs, confirm_pairs, normalize_rows

#: Accepted ``method`` values, the first is the default.
METHODS = ("ivf",)
_QUERY_BATCH = 16384  # queries per range search: bounds the result buffers


def _require(module: str) -> Any:
    try:
        return __import__(module)
    except ImportError as exc:
        raise ImportError(f"approximate CNN search needs the '{module}' package: pip install 'dedupd[ann]'") from exc


def check_method(method: str) -> str:
    """``method`` when it names an approximate index, else a ValueError naming the choices."""
    if method not in METHODS:
        raise ValueError(f"unknown CNN index {method!r}: use 'exact' or one of {', '.join(METHODS)}")
    return method


def _ivf_candidates(xn: np.ndarray, threshold: float, nlist: int | None, nprobe: int) -> tuple[np.ndarray, np.ndarray]:
    faiss = _require("faiss")
    n, d = xn.shape
    nlist = max(1, min(n // 39, nlist or int(4 * math.sqrt(n))))  # faiss wants >= 39 points per cell
    quantizer = faiss.IndexFlatIP(d)
    index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
    step = max(1, n // (64 * nlist))  # k-means on about 64 points per cell (faiss wants >= 39)
    index.train(np.ascontiguousarray(xn[::step]))
    index.add(xn)
    index.nprobe = max(1, min(nprobe, nlist))
    out_i, out_j = [], []
    for a in range(0, n, _QUERY_BATCH):
        # a range search keeps scores strictly above the radius: widen it a little, re-check later
        lims, _, ids = index.range_search(xn[a : a + _QUERY_BATCH], float(threshold) - 1e-4)
        rows = np.repeat(np.arange(a, a + len(lims) - 1, dtype=np.int64), np.diff(lims).astype(np.int64))
        out_i.append(rows)
        out_j.append(ids.astype(np.int64))
    return np.concatenate(out_i), np.concatenate(out_j)


def ann_pairs(
    x: np.ndarray,
    threshold: float,
    *,
    method: str = "ivf",
    normalized: bool = False,
    nlist: int | None = None,
    nprobe: int = 16,
) -> Pairs:
    """Pairs ``i < j`` with cosine similarity ``>= threshold`` found by an approximate index.

    A subset of :func:`dedupd.core.vectors.cosine_pairs` with the same scores (each candidate is
    re-scored from the vectors); the pairs it misses are the index's recall loss.

    Args:
        x: (n, d) vectors.
        threshold: minimum similarity (inclusive), in [-1, 1].
        method: ``"ivf"`` (faiss, range search; the only one so far).
        normalized: rows are already unit length.
        nlist, nprobe: IVF cells (default ``4 sqrt(n)``) and cells searched per vector (more:
            higher recall, slower).

    Returns:
        ``(i, j, sim)`` as :func:`dedupd.core.vectors.cosine_pairs`: sorted by ``(i, j)``.

    Raises:
        ValueError: unknown ``method``. ImportError: its library is not installed.
    """
    check_method(method)
    xn = normalize_rows(x, dtype=np.float32) if not normalized else np.ascontiguousarray(x, dtype=np.float32)
    n = len(xn)
    if n < 2:
        return _empty_pairs(xn.dtype)
    i, j = _ivf_candidates(xn, threshold, nlist, nprobe)
    keep = (j >= 0) & (i != j)
    i, j = np.minimum(i[keep], j[keep]), np.maximum(i[keep], j[keep])
    if len(i):
        code = np.unique(i * n + j)  # each pair once (found from both ends), sorted by (i, j)
        i, j = code // n, code % n
    return confirm_pairs(xn, i, j, _check(xn, i, j), threshold)
