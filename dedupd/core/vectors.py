"""Cosine-similarity search over embedding rows (pure numpy, memory bounded).

Rows are L2-normalised once; a cosine similarity is then a dot product. The all-pairs search walks
the upper triangle of the similarity matrix in ``block_rows x block_cols`` tiles, so the
temporary memory is bounded by the tile size whatever the number of rows: an N x N matrix is
never built. :class:`VectorIndex` is the incremental form the daemon keeps in memory.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from typing import Any, Generic, TypeVar

import numpy as np

#: Default tile of the all-pairs scan: 2048 x 2048 float32 similarities = 16 MiB (measured on 2
#: cores: faster than 1024 x 8192, as the scan of the tile for hits stays closer to the cache).
BLOCK_ROWS = 2048
BLOCK_COLS = 2048

Pairs = tuple[np.ndarray, np.ndarray, np.ndarray]


def _float_dtype(x: np.ndarray, dtype: np.dtype | type | None) -> np.dtype:
    if dtype is not None:
        return np.dtype(dtype)
    return x.dtype if x.dtype in (np.float32, np.float64) else np.dtype(np.float32)


def normalize_rows(x: np.ndarray | Sequence, dtype: np.dtype | type | None = np.float32) -> np.ndarray:
    """Rows of ``x`` scaled to unit L2 norm; all-zero and near-zero rows (norm below 10 machine
    epsilons of the dtype) are left as they are, as scikit-learn's ``normalize`` does.

    Args:
        x: (n, d) array, or a single (d,) vector (treated as one row).
        dtype: result dtype; None keeps float32/float64 input as is (others become float32).

    Returns:
        A new C-contiguous (n, d) array.
    """
    arr = np.asarray(x)
    arr = np.array(arr.reshape(1, -1) if arr.ndim == 1 else arr, dtype=_float_dtype(arr, dtype), order="C")
    norms = np.sqrt(np.einsum("ij,ij->i", arr, arr))
    # scikit-learn's rule (imagededup's similarity): norms below 10 machine epsilons count as zero
    norms[norms < 10 * np.finfo(arr.dtype).eps] = 1.0
    arr /= norms[:, None]
    return arr


def _empty_pairs(dtype: np.dtype) -> Pairs:
    empty = np.empty(0, dtype=np.int64)
    return empty, empty.copy(), np.empty(0, dtype=dtype)


#: The pruned scan is planned for inputs of at least this many rows (below it, planning -- a few
#: seconds on a loaded 2-core machine -- costs more than it can save); ``prune=True`` forces it.
PRUNE_MIN_ROWS = 40_000
#: Slack on the pruning bound: far above the float32 rounding of the bound's products of unit
#: vectors (a few 1e-6 at d = 576), so no pair at or above the threshold is ever pruned.
PRUNE_MARGIN = 1e-4
#: Rough costs in nanoseconds per pair on 2 loaded cores (AVX-512, OpenBLAS), measured with
#: bench/bench_cnn_scale.py; only their ratios matter. A tile product costs a fixed part (writing
#: and scanning the tile) plus a part per dimension; checking one candidate pair on its own costs
#: two row gathers (memory bound).
_COST_TILE, _COST_DIM, _COST_CHECK = 5.0, 0.03, 1000.0
_FIT_ROWS, _PLAN_ROWS = 4096, 1024  # rows sampled to fit the rotation, and (others) to plan k


def _plan_axes(xn: np.ndarray, threshold: float, force: bool) -> np.ndarray | None:
    """The ``(d, k)`` head axes of the pruning bound (see :func:`_prune_bound`), or None.

    The axes are the principal axes of a sample of the rows; ``k`` is chosen by the cost model
    above on rows other than those the axes were fitted on (fitted rows overstate what the head
    holds). None when no ``k`` pays against the plain product (unless ``force``).
    """
    n, d = xn.shape
    step = max(1, n // _FIT_ROWS)
    fit = xn[::step][:_FIT_ROWS].astype(np.float64)
    _, vecs = np.linalg.eigh(fit.T @ fit)
    rot = vecs[:, ::-1]  # principal axes, largest variance first
    held_out = xn[step // 2 :: max(1, n // _PLAN_ROWS)][:_PLAN_ROWS].astype(np.float64) @ rot
    upper = np.triu_indices(len(held_out), k=1)
    plain = _COST_TILE + _COST_DIM * d
    best: tuple[float, int] | None = None
    for k in sorted({k for k in (d // 8, d // 4, d // 2, 16, 32, 64, 96, 128, 192, 256) if 0 <= k < d}):
        head, tail = held_out[:, :k], np.linalg.norm(held_out[:, k:], axis=1)
        bounds = (head @ head.T + np.outer(tail, tail))[upper]
        passed = float(np.mean(bounds >= threshold - PRUNE_MARGIN)) if len(bounds) else 1.0
        # checking many candidates of a tile is one smaller product: never dearer than the plain one
        cost = _COST_TILE + _COST_DIM * (k + 1) + min(_COST_CHECK * passed, plain)
        if best is None or cost < best[0]:
            best = (cost, k)
    if best is None or (best[0] >= 0.8 * plain and not force):
        return None
    return np.ascontiguousarray(rot[:, : best[1]])


def bound_rows(rows: np.ndarray, axes: np.ndarray) -> np.ndarray:
    """``(m, k + 1)`` float32 rows ``[head, |tail|]`` of ``rows`` for head ``axes`` (d, k)."""
    k = axes.shape[1]
    out = np.empty((len(rows), k + 1), dtype=np.float32)
    for a in range(0, len(rows), BLOCK_COLS):
        part = rows[a : a + BLOCK_COLS].astype(np.float64)
        head = part @ axes  # float64: the tail norm below is exact to ~1e-8
        tail2 = np.einsum("ij,ij->i", part, part) - np.einsum("ij,ij->i", head, head)
        out[a : a + len(part), :k] = head
        # rounded up a little, so float32 rounding of the bound's product cannot make it too low
        out[a : a + len(part), k] = np.sqrt(np.maximum(tail2, 0.0) + 1e-12) * (1 + 1e-6)
    return out


def _prune_bound(xn: np.ndarray, threshold: float, force: bool) -> np.ndarray | None:
    """Rows ``[head, |tail|]`` whose dot products bound the cosine similarities from above.

    The rows are rotated onto the principal axes of a sample (an orthogonal map: dot products
    are unchanged) and split into the first ``k`` coordinates and the rest; by Cauchy-Schwarz
    ``x . y <= head_x . head_y + |tail_x| |tail_y|``, so one product of ``k + 1`` columns rules
    out every pair whose bound is below the threshold. None when that does not pay (see
    :func:`_plan_axes`).
    """
    axes = _plan_axes(xn, threshold, force)
    return None if axes is None else bound_rows(xn, axes)


def screen_margin(dim: int, dtype: np.dtype | type) -> float:
    """How far a fast product's score of two unit rows (BLAS, any blocking) can fall below the
    pair's :func:`pair_scores` score: twice the worst-case rounding of a ``dim``-term dot product."""
    return 2.0 * max(1, int(dim)) * float(np.finfo(dtype).eps)


def pair_scores(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Dot products of the rows of ``a`` with the rows of ``b`` (or with one vector ``b``),
    accumulated in float64 and rounded once to ``a``'s dtype; identical non-zero rows score 1.0.

    The one score of a pair, whichever search found it: a BLAS product's rounding depends on the
    product's shape and the machine (a tile of 64 rows and one of 2048 can disagree in the last
    bit), so a pair right at the threshold could be in one search's result and not another's.
    Every threshold decision is taken on this score; fast products only screen candidates.
    Identical encodings (an exact copy's) would otherwise score 1 +- 4e-7 (the rounding of their
    normalisation), a coin toss at ``min_similarity_threshold=1.0``.
    """
    out = np.empty(len(a), dtype=a.dtype)
    for k in range(0, len(a), 1024):  # bounded temporary memory
        rows, other = a[k : k + 1024], (b[k : k + 1024] if b.ndim == 2 else b)
        dots = np.multiply(rows, other, dtype=np.float64).sum(axis=1)
        dots[(dots > 0) & np.all(rows == other, axis=1)] = 1.0
        out[k : k + 1024] = dots
    return out


def confirm_pairs(xn: np.ndarray, i: np.ndarray, j: np.ndarray, approx: np.ndarray,
                  threshold: float) -> Pairs:
    """The candidate pairs ``(i, j)`` whose :func:`pair_scores` score is ``>= threshold``, with it;
    ``approx`` (their scores by a fast product) rules out those clearly below."""
    near = approx >= threshold - screen_margin(xn.shape[1], xn.dtype)
    i, j = i[near], j[near]
    sims = pair_scores(xn[i], xn[j])
    keep = sims >= threshold
    return i[keep], j[keep], sims[keep]


def _check(xn: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Fast similarities ``xn[i[k]] . xn[j[k]]`` of candidate pairs (to screen them): one product
    of the distinct rows by the distinct columns when that is cheaper than gathering each pair."""
    rows, ri = np.unique(i, return_inverse=True)
    cols, ci = np.unique(j, return_inverse=True)
    if len(rows) * len(cols) * _COST_DIM * xn.shape[1] <= len(i) * _COST_CHECK:
        return (xn[rows] @ xn[cols].T)[ri, ci]
    out = np.empty(len(i), dtype=xn.dtype)
    for a in range(0, len(i), 1024):  # gathered in chunks: bounded memory
        out[a : a + 1024] = np.einsum("ij,ij->i", xn[i[a : a + 1024]], xn[j[a : a + 1024]])
    return out


def _hits(sims: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Positions ``(row, col)`` of ``sims >= threshold``, in row-major order. Hits are rare, so
    the boolean tile is scanned 8 entries at a time (as 64-bit words) before looking closer."""
    mask = sims >= threshold
    rows, cols = mask.shape
    if cols % 8:
        r, c = np.nonzero(mask)
        return r, c
    wr, wc = np.nonzero(mask.view(np.uint64))
    kr, kb = np.nonzero(mask.reshape(rows, cols // 8, 8)[wr, wc])
    return wr[kr], wc[kr] * 8 + kb


def cosine_pairs(
    x: np.ndarray,
    threshold: float,
    *,
    normalized: bool = False,
    block_rows: int = BLOCK_ROWS,
    block_cols: int = BLOCK_COLS,
    prune: bool | None = None,
) -> Pairs:
    """Every pair ``i < j`` whose cosine similarity is ``>= threshold``.

    Exact: tile products (or, with pruning, a cheap upper bound of each similarity,
    :func:`_prune_bound`) only screen the pairs; each pair they cannot rule out is decided and
    scored by :func:`pair_scores`, so the result is the same whatever the tiling, the pruning or
    the machine (and the same as :mod:`dedupd.core.blocks`' tiles and :class:`VectorIndex`).

    Args:
        x: (n, d) vectors.
        threshold: minimum similarity (inclusive), in [-1, 1].
        normalized: rows are already unit length (skips the copy made by :func:`normalize_rows`).
        block_rows, block_cols: tile shape of the scan (bounds the temporary memory).
        prune: use the bound; None plans it from a sample when there are at least
            :data:`PRUNE_MIN_ROWS` rows and uses it only when the cost model says it pays.

    Returns:
        ``(i, j, sim)``: int64 index arrays sorted by ``(i, j)`` and the similarities in the
        dtype of the (normalised) input.
    """
    xn = np.ascontiguousarray(x) if normalized else normalize_rows(x, dtype=None)
    n = len(xn)
    if n < 2:
        return _empty_pairs(xn.dtype)
    block_rows, block_cols = max(1, int(block_rows)), max(1, int(block_cols))
    use_bound = (n >= PRUNE_MIN_ROWS) if prune is None else prune
    bound = _prune_bound(xn, threshold, force=prune is True) if use_bound and xn.shape[1] > 0 else None
    index = np.int32 if n < 2**31 else np.int64  # parts are kept narrow: the result can be huge
    floor = threshold - screen_margin(xn.shape[1], xn.dtype)
    out_i: list[np.ndarray] = []
    out_j: list[np.ndarray] = []
    out_s: list[np.ndarray] = []
    for a in range(0, n - 1, block_rows):
        b = min(n, a + block_rows)
        row_i: list[np.ndarray] = []
        row_j: list[np.ndarray] = []
        row_s: list[np.ndarray] = []
        for c in range(a, n, block_cols):
            d = min(n, c + block_cols)
            if bound is None:
                sims = xn[a:b] @ xn[c:d].T
                r, s = _hits(sims, floor)
                approx: np.ndarray | None = sims[r, s]
            else:
                r, s = _hits(bound[a:b] @ bound[c:d].T, threshold - PRUNE_MARGIN)
                approx = None
            if c < b:  # the tile crosses the diagonal: keep global j > global i only
                keep = s + c > r + a
                r, s = r[keep], s[keep]
                approx = None if approx is None else approx[keep]
            r, s = r + a, s + c
            r, s, vals = confirm_pairs(xn, r, s, _check(xn, r, s) if approx is None else approx, threshold)
            if len(r):
                row_i.append(r.astype(index))
                row_j.append(s.astype(index))
                row_s.append(vals)
        if row_i:  # sorted per row block, so the blocks concatenate in (i, j) order
            i, j, s = np.concatenate(row_i), np.concatenate(row_j), np.concatenate(row_s)
            order = np.lexsort((j, i))
            out_i.append(i[order])
            out_j.append(j[order])
            out_s.append(s[order])
    if not out_i:
        return _empty_pairs(xn.dtype)
    return (np.concatenate(out_i, dtype=np.int64, casting="safe"),
            np.concatenate(out_j, dtype=np.int64, casting="safe"), np.concatenate(out_s))


def similarities(x: np.ndarray, query: np.ndarray, *, normalized: bool = False) -> np.ndarray:
    """Cosine similarity of ``query`` (d,) to every row of ``x`` (n, d)."""
    xn = np.asarray(x) if normalized else normalize_rows(x, dtype=None)
    q = np.asarray(query).reshape(-1) if normalized else normalize_rows(query, dtype=xn.dtype)[0]
    return xn @ q.astype(xn.dtype, copy=False)


def search(
    x: np.ndarray, query: np.ndarray, threshold: float, *, normalized: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Rows whose similarity to ``query`` is ``>= threshold``: ``(indices, sims)`` in index order."""
    sims = similarities(x, query, normalized=normalized)
    idx = np.flatnonzero(sims >= threshold)
    return idx, sims[idx]


def top_k(x: np.ndarray, query: np.ndarray, k: int, *, normalized: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` rows most similar to ``query``: ``(indices, sims)``, best first (ties by index)."""
    sims = similarities(x, query, normalized=normalized)
    k = max(0, min(int(k), len(sims)))
    if k == 0:
        return np.empty(0, dtype=np.int64), sims[:0]
    kth = -np.partition(-sims, k - 1)[k - 1]  # the k-th largest similarity
    cand = np.flatnonzero(sims >= kth)  # every row tied with it too, so ties resolve by index
    order = np.lexsort((cand, -sims[cand]))[:k]
    idx = cand[order].astype(np.int64)
    return idx, sims[idx]

K = TypeVar("K", bound=Hashable)  # the caller's key type (the daemon: content digests)


class VectorIndex(Generic[K]):
    """An in-memory, incrementally updated matrix of unit vectors keyed by any hashable key.

    Rows live in one preallocated array that grows by doubling; removing a key moves the last row
    into its slot, so add and remove are O(d) and a query is one matrix-vector product.

    From ``sketch_rows`` rows on, the first threshold search plans the pruning bound of
    :func:`cosine_pairs` for that threshold; when it pays, a sketch of ``k + 1 < d`` columns per
    row (head coordinates on principal axes and the tail norm) is kept up to date with the rows,
    and a threshold search reads the sketch plus the rows it cannot rule out instead of the whole
    matrix (the same keys; scores of the rows read, computed the same way).

    Args:
        dim: vector length.
        dtype: storage and compute dtype (float32 by default).
        capacity: rows allocated up front.
        sketch_rows: rows from which a threshold search plans a sketch (None: never).
    """

    #: Default of ``sketch_rows``.
    SKETCH_ROWS = 20_000

    def __init__(self, dim: int, dtype: np.dtype | type = np.float32, capacity: int = 1024,
                 sketch_rows: int | None = SKETCH_ROWS) -> None:
        self.dim = int(dim)
        self.dtype = np.dtype(dtype)
        self._data = np.empty((max(1, int(capacity)), self.dim), dtype=self.dtype)
        self._keys: list[K] = []
        self._rows: dict[K, int] = {}
        self._sketch_rows = sketch_rows
        self._axes: np.ndarray | None = None  # head axes of the sketch, once planned and paying
        self._sketch = np.empty((0, 0), dtype=np.float32)
        self._planned = False

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._rows

    def keys(self) -> list[K]:
        """Keys in row order (changes when keys are removed)."""
        return list(self._keys)

    @property
    def matrix(self) -> np.ndarray:
        """Read-only view of the stored unit vectors, one row per key in :meth:`keys` order."""
        view = self._data[: len(self._keys)]
        view.flags.writeable = False
        return view

    def get(self, key: K) -> np.ndarray:
        """The stored (normalised) vector of ``key``; KeyError when absent."""
        return self._data[self._rows[key]].copy()

    def _reserve(self, extra: int) -> None:
        need = len(self._keys) + extra
        if need > len(self._data):
            grown = np.empty((max(need, 2 * len(self._data)), self.dim), dtype=self.dtype)
            grown[: len(self._keys)] = self._data[: len(self._keys)]
            self._data = grown
        if self._axes is not None and need > len(self._sketch):
            sketch = np.empty((len(self._data), self._sketch.shape[1]), dtype=np.float32)
            sketch[: len(self._keys)] = self._sketch[: len(self._keys)]
            self._sketch = sketch

    def add(self, key: K, vector: np.ndarray) -> None:
        """Insert ``key`` (normalising ``vector``), or replace its vector when already present."""
        self.add_many([key], np.asarray(vector).reshape(1, -1))

    def add_many(self, keys: Sequence[K], vectors: np.ndarray) -> None:
        """Insert or replace several keys at once; ``vectors`` is (len(keys), dim)."""
        vectors = np.asarray(vectors)
        if vectors.ndim != 2 or vectors.shape != (len(keys), self.dim):
            raise ValueError(f"expected vectors of shape ({len(keys)}, {self.dim}), got {vectors.shape}")
        unit = normalize_rows(vectors, dtype=self.dtype)
        self._reserve(len(keys))
        slots = []
        for key, row in zip(keys, unit):
            slot = self._rows.get(key)
            if slot is None:
                slot = len(self._keys)
                self._keys.append(key)
                self._rows[key] = slot
            self._data[slot] = row
            slots.append(slot)
        if self._axes is not None and slots:
            self._sketch[slots] = bound_rows(unit, self._axes)

    def remove(self, key: K) -> bool:
        """Forget ``key``; returns False when it was not present."""
        slot = self._rows.pop(key, None)
        if slot is None:
            return False
        last = len(self._keys) - 1
        if slot != last:
            moved = self._keys[last]
            self._data[slot] = self._data[last]
            if self._axes is not None:
                self._sketch[slot] = self._sketch[last]
            self._keys[slot] = moved
            self._rows[moved] = slot
        self._keys.pop()
        return True

    def _unit(self, vector: np.ndarray) -> np.ndarray:
        return normalize_rows(np.asarray(vector).reshape(1, -1), dtype=self.dtype)[0]

    def search(
        self, vector: np.ndarray, threshold: float, *, exclude: Iterable[K] = ()
    ) -> list[tuple[K, float]]:
        """Keys whose similarity to ``vector`` is ``>= threshold``, best first (ties by row)."""
        n = len(self._keys)
        unit = self._unit(vector)
        if not self._planned and self._sketch_rows is not None and n >= self._sketch_rows:
            self._plan_sketch(threshold)
        floor = threshold - screen_margin(self.dim, self.dtype)
        cand = None
        if self._axes is not None:
            # einsum, not BLAS: a matrix-vector product this small loses more to BLAS threads
            # waking up (tens of ms on a loaded machine) than it gains from them
            near = np.einsum("ij,j->i", self._sketch[:n], bound_rows(unit[None], self._axes)[0])
            cand = np.flatnonzero(near >= threshold - PRUNE_MARGIN)
        if cand is not None and 4 * len(cand) <= n:  # else (a low threshold) the plain product
            idx = cand[np.einsum("ij,j->i", self._data[cand], unit) >= floor]
        else:
            idx = np.flatnonzero(self._data[:n] @ unit >= floor)
        vals = pair_scores(self._data[idx], unit)  # decided as cosine_pairs decides a pair
        idx, vals = idx[vals >= threshold], vals[vals >= threshold]
        order = np.lexsort((idx, -vals))
        skip = set(exclude)
        return [(self._keys[i], float(v)) for i, v in zip(idx[order].tolist(), vals[order].tolist())
                if self._keys[i] not in skip]

    def _plan_sketch(self, threshold: float) -> None:
        """Plan the sketch once, for the first threshold searched (it stays valid for any)."""
        self._planned = True
        rows = self._data[: len(self._keys)]
        self._axes = _plan_axes(rows, threshold, force=False)
        if self._axes is not None:
            self._sketch = np.empty((len(self._data), self._axes.shape[1] + 1), dtype=np.float32)
            self._sketch[: len(rows)] = bound_rows(rows, self._axes)

    @property
    def sketched(self) -> bool:
        """Whether threshold searches read the sketch instead of the whole matrix."""
        return self._axes is not None

    def top_k(self, vector: np.ndarray, k: int) -> list[tuple[K, float]]:
        """The ``k`` most similar keys, best first (ties by row)."""
        idx, sims = top_k(self._data[: len(self._keys)], self._unit(vector), k, normalized=True)
        return [(self._keys[i], float(s)) for i, s in zip(idx.tolist(), sims.tolist())]

    def pairs(self, threshold: float, **options: Any) -> list[tuple[K, K, float]]:
        """Every pair of keys with similarity ``>= threshold`` (``options``: see :func:`cosine_pairs`)."""
        i, j, s = cosine_pairs(self._data[: len(self._keys)], threshold, normalized=True, **options)
        keys = self._keys
        return [(keys[a], keys[b], v) for a, b, v in zip(i.tolist(), j.tolist(), s.tolist())]
