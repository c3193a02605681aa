"""Properties of the cosine search: tiled all-pairs == brute force, queries, the incremental index."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dedupd.core import vectors
from dedupd.core.vectors import VectorIndex, cosine_pairs, normalize_rows


def brute_pairs(x: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    xn = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-300)
    sims = xn.astype(np.float64) @ xn.T.astype(np.float64)
    i, j = np.nonzero(np.triu(sims >= threshold, k=1))
    return i, j, sims[i, j]


def clustered(rng: np.random.Generator, n: int, d: int, clusters: int, noise: float) -> np.ndarray:
    centres = rng.standard_normal((clusters, d))
    return (centres[rng.integers(0, clusters, n)] + noise * rng.standard_normal((n, d))).astype(np.float32)


def assert_same_pairs(got, x: np.ndarray, threshold: float, tol: float = 1e-5) -> None:
    """Same pairs as float64 brute force, except pairs within ``tol`` of the threshold (rounding)."""
    gi, gj, gs = got
    assert gi.dtype == gj.dtype == np.int64, "indices are int64 whatever the parts' width"
    assert np.all(gi < gj)
    assert np.all(np.lexsort((gj, gi)) == np.arange(len(gi))), "pairs must be sorted by (i, j)"
    bi, bj, bs = brute_pairs(x.astype(np.float64), threshold - tol)
    sure = bs >= threshold + tol
    got_set = set(zip(gi.tolist(), gj.tolist()))
    want_all = set(zip(bi.tolist(), bj.tolist()))
    want_sure = set(zip(bi[sure].tolist(), bj[sure].tolist()))
    assert want_sure <= got_set <= want_all
    ref = dict(zip(zip(bi.tolist(), bj.tolist()), bs.tolist()))
    np.testing.assert_allclose(gs, [ref[p] for p in zip(gi.tolist(), gj.tolist())], atol=1e-5)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(0, 70),
    d=st.integers(1, 9),
    block_rows=st.integers(1, 17),
    block_cols=st.integers(1, 23),
    threshold=st.sampled_from([-1.0, -0.3, 0.0, 0.5, 0.9, 0.99, 1.0]),
    seed=st.integers(0, 2**32 - 1),
)
def test_tiled_pairs_equal_brute_force(n, d, block_rows, block_cols, threshold, seed):
    rng = np.random.default_rng(seed)
    x = clustered(rng, n, d, clusters=max(1, n // 5), noise=0.2)
    got = cosine_pairs(x, threshold, block_rows=block_rows, block_cols=block_cols)
    assert_same_pairs(got, x, threshold)


@pytest.mark.parametrize("n", [1, 2, 15, 16, 17, 31, 32, 33, 64, 65])
@pytest.mark.parametrize("blocks", [(16, 16), (16, 32), (32, 16), (7, 5), (1024, 8192)])
def test_block_boundaries(n, blocks):
    rng = np.random.default_rng(n)
    x = clustered(rng, n, 12, clusters=3, noise=0.5)
    got = cosine_pairs(x, 0.5, block_rows=blocks[0], block_cols=blocks[1])
    assert_same_pairs(got, x, 0.5)
    # the same call without tiling (one tile) gives exactly the same pairs
    one = cosine_pairs(x, 0.5, block_rows=n, block_cols=n)
    assert [a.tolist() for a in got[:2]] == [a.tolist() for a in one[:2]]


def test_exact_copies_zero_rows_and_threshold_extremes():
    x = np.array([[1, 0, 0], [1, 0, 0], [0, 0, 0], [0, 2, 0], [-1, 0, 0]], dtype=np.float32)
    i, j, s = cosine_pairs(x, 1.0)
    assert list(zip(i.tolist(), j.tolist())) == [(0, 1)]
    i, j, s = cosine_pairs(x, -1.0, block_rows=2, block_cols=2)
    assert len(i) == 5 * 4 // 2  # everything, including the zero row at similarity 0
    z = dict(zip(zip(i.tolist(), j.tolist()), s.tolist()))
    assert z[(0, 2)] == 0.0 and z[(0, 4)] == pytest.approx(-1.0)


def test_normalize_rows_dtype_and_zero():
    x = np.array([[3, 4], [0, 0]], dtype=np.int64)
    out = normalize_rows(x)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[0.6, 0.8], [0, 0]])
    assert normalize_rows(x.astype(np.float64), dtype=None).dtype == np.float64
    assert normalize_rows(np.array([0.0, 2.0])).shape == (1, 2)


def test_memory_is_bounded_by_the_tile(monkeypatch):
    """No temporary larger than a tile: spy on the matrix products."""
    shapes = []
    real = np.ndarray.__matmul__

    class Spy(np.ndarray):
        def __matmul__(self, other):
            out = real(np.asarray(self), np.asarray(other))
            shapes.append(out.shape)
            return out

    x = clustered(np.random.default_rng(0), 300, 8, 10, 0.1)
    monkeypatch.setattr(vectors, "normalize_rows", lambda a, dtype=None: normalize_rows(a, dtype).view(Spy))
    cosine_pairs(x, 0.9, block_rows=50, block_cols=70)
    assert shapes and max(a * b for a, b in shapes) <= 50 * 70


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 60), k=st.integers(0, 70), seed=st.integers(0, 2**32 - 1))
def test_search_and_top_k(n, k, seed):
    rng = np.random.default_rng(seed)
    x = clustered(rng, n, 6, clusters=3, noise=0.05)
    x[rng.integers(0, n)] = x[0]  # an exact tie with row 0
    q = x[0] + 0.01 * rng.standard_normal(6).astype(np.float32)
    sims = normalize_rows(x).astype(np.float64) @ normalize_rows(q)[0].astype(np.float64)
    idx, s = vectors.search(x, q, 0.8)
    assert set(np.flatnonzero(sims >= 0.8 + 1e-5).tolist()) <= set(idx.tolist())
    assert set(idx.tolist()) <= set(np.flatnonzero(sims >= 0.8 - 1e-5).tolist())
    assert np.all(np.diff(idx) > 0)
    np.testing.assert_allclose(s, sims[idx], atol=1e-5)
    tidx, ts = vectors.top_k(x, q, k)
    assert len(tidx) == min(k, n)
    assert np.all(np.diff(ts) <= 0)
    want = sorted(range(n), key=lambda r: (-round(float(sims[r]), 5), r))[: min(k, n)]
    assert sorted(np.round(sims[tidx], 5).tolist()) == sorted(np.round(sims[want], 5).tolist())


def test_vector_index_add_remove_query():
    rng = np.random.default_rng(1)
    x = clustered(rng, 40, 5, clusters=4, noise=0.05)
    index = VectorIndex(5, capacity=3)  # forces growth
    index.add_many([f"k{r}" for r in range(30)], x[:30])
    for r in range(30, 40):
        index.add(f"k{r}", x[r])
    assert len(index) == 40 and "k39" in index
    for r in range(0, 40, 3):
        assert index.remove(f"k{r}")
    assert not index.remove("k0") and "k0" not in index
    alive = [r for r in range(40) if r % 3]
    assert sorted(index.keys()) == sorted(f"k{r}" for r in alive)
    index.add("k1", -x[1])  # replace in place
    x = x.copy()
    x[1] = -x[1]
    np.testing.assert_allclose(index.get("k1"), normalize_rows(x[1])[0], atol=1e-6)
    # a query equals brute force over the live rows, best first
    q = x[5]
    sims = {f"k{r}": float(normalize_rows(x[r])[0] @ normalize_rows(q)[0]) for r in alive}
    got = index.search(q, 0.7, exclude=["k5"])
    got_keys = [k for k, _ in got]
    assert {k for k, s in sims.items() if s >= 0.7 + 1e-5} - {"k5"} <= set(got_keys)
    assert set(got_keys) <= {k for k, s in sims.items() if s >= 0.7 - 1e-5} - {"k5"}
    assert all(abs(s - sims[k]) < 1e-5 for k, s in got)
    assert all(a[1] >= b[1] for a, b in zip(got, got[1:]))  # best first
    assert [k for k, _ in index.top_k(q, 1)] == ["k5"]
    # pairs over the index equal pairs over the live matrix
    pairs = {(a, b) if a < b else (b, a) for a, b, _ in index.pairs(0.9)}
    i, j, _ = cosine_pairs(np.stack([x[r] for r in alive]), 0.9)
    names = [f"k{r}" for r in alive]
    want = {tuple(sorted((names[a], names[b]))) for a, b in zip(i.tolist(), j.tolist())}
    assert pairs == want
    with pytest.raises(ValueError):
        index.add_many(["x"], np.zeros((1, 4)))


def test_near_zero_rows_are_not_normalised_like_scikit_learn():
    """A row whose norm is below 10 machine epsilons stays as it is (imagededup's cosine via sklearn)."""
    x = np.array([[1.0, 0.0], [1e-9, 0.0], [0.0, 0.0]], dtype=np.float32)
    out = normalize_rows(x)
    np.testing.assert_array_equal(out[1:], x[1:])
    assert out[0, 0] == 1.0
    assert normalize_rows(x.astype(np.float64), dtype=None)[1, 0] == 1.0  # float64's epsilon is far smaller


# -- the pruned scan (a rotated Cauchy-Schwarz bound rules pairs out; the rest is computed) --------


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(0, 120),
    d=st.integers(1, 40),
    blocks=st.sampled_from([(7, 5), (16, 64), (2048, 2048)]),
    threshold=st.sampled_from([-1.0, -0.3, 0.0, 0.5, 0.9, 0.99, 1.0]),
    zero_rows=st.integers(0, 3),
    seed=st.integers(0, 2**32 - 1),
)
def test_pruned_pairs_equal_brute_force(n, d, blocks, threshold, zero_rows, seed):
    rng = np.random.default_rng(seed)
    x = clustered(rng, n, d, clusters=max(1, n // 6), noise=0.1)
    if n:
        x[rng.integers(0, n, zero_rows)] = 0.0  # zero rows: similarity 0 with everything
        x[rng.integers(0, n)] = x[0]  # an exact copy
    got = cosine_pairs(x, threshold, block_rows=blocks[0], block_cols=blocks[1], prune=True)
    assert_same_pairs(got, x, threshold)
    assert got[2].dtype == np.float32


def iso_with_copies(n: int, d: int, seed: int = 0) -> np.ndarray:
    """Isotropic unit rows (nothing to prune by but dimensions) with 10 % near copies."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    src, dst = rng.integers(0, n, n // 10), rng.integers(0, n, n // 10)
    x[dst] = x[src] + 0.15 * rng.standard_normal((n // 10, d)).astype(np.float32)
    return normalize_rows(x)


@pytest.mark.parametrize("threshold", [0.5, 0.9, 0.97])
def test_pruned_scan_equals_the_plain_scan(threshold):
    x = iso_with_copies(1500, 96)
    plain = cosine_pairs(x, threshold, normalized=True, prune=False)
    pruned = cosine_pairs(x, threshold, normalized=True, prune=True, block_rows=500, block_cols=700)
    assert len(plain[0]) > 50
    assert np.array_equal(plain[0], pruned[0]) and np.array_equal(plain[1], pruned[1])
    np.testing.assert_allclose(plain[2], pruned[2], atol=1e-6)
    assert_same_pairs(pruned, x, threshold)


def test_the_planner_prunes_576_d_embeddings_at_0_9():
    x = iso_with_copies(2000, 576)
    bound = vectors._prune_bound(x, 0.9, force=False)
    assert bound is not None and bound.shape == (2000, bound.shape[1]) and bound.shape[1] <= 200
    # the bound is an upper bound of every similarity (checked on a block)
    assert np.all(bound[:300] @ bound[:300].T >= x[:300] @ x[:300].T - 1e-6)


def test_pruning_is_not_planned_when_it_cannot_pay():
    x = iso_with_copies(2000, 64)
    assert vectors._prune_bound(x, -1.0, force=False) is None  # every pair passes any bound
    assert vectors._prune_bound(x, -1.0, force=True) is not None
    # small inputs are not planned at all: the default call equals the plain scan exactly
    a, b = cosine_pairs(x, 0.9, normalized=True), cosine_pairs(x, 0.9, normalized=True, prune=False)
    assert all(np.array_equal(p, q) for p, q in zip(a, b))


def test_a_threshold_equal_to_a_score_keeps_its_pair():
    x = iso_with_copies(1500, 48, seed=3)
    i, j, s = cosine_pairs(x, 0.8, normalized=True, prune=True)
    for k in (0, len(s) // 2, int(np.argmax(s))):
        gi, gj, _ = cosine_pairs(x, float(s[k]), normalized=True, prune=True)
        assert (i[k], j[k]) in set(zip(gi.tolist(), gj.tolist()))


def test_pruned_scan_float64_and_unnormalised_input():
    x = iso_with_copies(800, 32, seed=5).astype(np.float64) * np.random.default_rng(1).uniform(0.1, 9, (800, 1))
    got = cosine_pairs(x, 0.85, prune=True)
    assert got[2].dtype == np.float64
    assert_same_pairs(got, x, 0.85)


def test_hit_scan_by_words_equals_nonzero():
    rng = np.random.default_rng(0)
    for shape in [(5, 16), (7, 13), (64, 2048), (1, 8)]:
        sims = rng.uniform(-1, 1, shape).astype(np.float32)
        for t in (0.999, 0.5, -1.0, 2.0):
            r, c = vectors._hits(sims, t)
            wr, wc = np.nonzero(sims >= t)
            assert np.array_equal(r, wr) and np.array_equal(c, wc)


@pytest.mark.parametrize("threshold", [0.9, 0.95])
def test_sketched_index_search_equals_the_plain_index(threshold):
    """A sketched VectorIndex (the daemon's per-file query) returns the same keys and scores as an
    unsketched one, through adds, replacements and removals after the sketch was planned."""
    x = iso_with_copies(2400, 576, seed=7)
    sketched: VectorIndex[int] = VectorIndex(576, capacity=8, sketch_rows=1000)
    plain: VectorIndex[int] = VectorIndex(576, sketch_rows=None)
    for index in (sketched, plain):
        index.add_many(list(range(1200)), x[:1200])
        index.search(x[0], threshold)  # plans the sketch on the first 1,200 rows
    assert sketched.sketched and not plain.sketched
    rng = np.random.default_rng(0)
    for index in (sketched, plain):  # changes after planning: new rows, a replacement, removals
        index.add_many(list(range(1200, 2400)), x[1200:] * 3.0)
        index.add(5, x[2399])
        for key in (0, 17, 2398):
            index.remove(key)
    for q in rng.integers(0, 2400, 40).tolist() + [2399]:
        got, want = sketched.search(x[q], threshold), plain.search(x[q], threshold)
        assert [k for k, _ in got] == [k for k, _ in want] and len(want) >= 1
        np.testing.assert_allclose([s for _, s in got], [s for _, s in want], atol=1e-6)
    # a threshold the sketch cannot prune at falls back to the plain product: the same answer
    assert [k for k, _ in sketched.search(x[3], -1.0)] == [k for k, _ in plain.search(x[3], -1.0)]
    assert plain.pairs(threshold) == [(a, b, pytest.approx(v, abs=1e-6)) for a, b, v in sketched.pairs(threshold)]


def test_index_below_its_sketch_size_is_not_sketched():
    x = iso_with_copies(300, 576)
    index: VectorIndex[int] = VectorIndex(576)
    index.add_many(list(range(300)), x)
    assert index.search(x[1], 0.9)[0][0] == 1 and not index.sketched


@pytest.mark.parametrize("d", [24, 576])
def test_a_pair_at_the_threshold_is_decided_alike_by_every_search(d):
    """Thresholds set to pairs' own scores put those pairs exactly on the boundary, where a BLAS
    product's rounding (which depends on its shape: tile, strip, matrix-vector) would decide them
    differently. Every search -- tiles of any size, the pruned scan, Ray's tiles, the daemon's
    per-file query -- returns the same pairs with the same scores, bit for bit."""
    from dedupd.core.blocks import cosine_tile, merge, tiles

    rng = np.random.default_rng(d)
    raw = rng.normal(size=(260, d)).astype(np.float32)
    raw[::9] = raw[1] + 0.3 * raw[::9]
    index: VectorIndex[int] = VectorIndex(d, sketch_rows=None)
    index.add_many(list(range(len(raw))), raw)
    x = np.array(index.matrix)  # the unit rows, as every search sees them
    base = cosine_pairs(x, 0.2, normalized=True)
    picks = rng.choice(len(base[2]), 12, replace=False)
    for threshold in [float(base[2][k]) for k in picks]:
        want = cosine_pairs(x, threshold, normalized=True)
        assert all(np.any((want[0] == base[0][k]) & (want[1] == base[1][k])) for k in picks
                   if base[2][k] >= threshold), "a pair scoring the threshold is kept"
        runs = {
            "blocks 7x13": cosine_pairs(x, threshold, normalized=True, block_rows=7, block_cols=13),
            "pruned": cosine_pairs(x, threshold, normalized=True, prune=True, block_rows=64, block_cols=100),
            "tiles 5": merge([cosine_tile(x, threshold, t) for t in tiles(len(x), 5)], x.dtype),
            "tiles 64": merge([cosine_tile(x, threshold, t) for t in tiles(len(x), 64)], x.dtype),
        }
        for name, got in runs.items():
            assert all(np.array_equal(w, g) for w, g in zip(want, got)), (name, threshold)
        scores = dict(zip(zip(want[0].tolist(), want[1].tolist()), want[2].tolist()))
        for q in range(0, len(x), 13):  # the daemon's query of one new file against the index
            got = {(min(q, k), max(q, k)): s for k, s in index.search(raw[q], threshold) if k != q}
            assert got == {p: s for p, s in scores.items() if q in p}, (q, threshold)


def test_identical_encodings_are_duplicates_at_threshold_one():
    """Exact copies' unit rows are bit-identical; computed, their score is 1 +- 4e-7 (the rounding of
    the normalisation), so without the rule some would fall below 1.0 -- each search alike."""
    from dedupd.core.blocks import cosine_tile, merge, tiles

    raw = np.abs(np.random.default_rng(3).normal(size=(400, 576))).astype(np.float32)
    raw[200:] = raw[:200]  # 200 exact copies
    x = normalize_rows(raw)
    computed = np.einsum("ij,ij->i", x.astype(np.float64), x.astype(np.float64)).astype(np.float32)
    assert np.any(computed < 1.0), "some copies compute below 1.0 (the case this rule is for)"
    copies = (np.arange(200), np.arange(200, 400))
    for got in (cosine_pairs(x, 1.0, normalized=True), cosine_pairs(x, 1.0, normalized=True, prune=True),
                merge([cosine_tile(x, 1.0, t) for t in tiles(len(x), 64)], x.dtype)):
        assert np.array_equal(got[0], copies[0]) and np.array_equal(got[1], copies[1])
        assert np.all(got[2] == 1.0)
    index: VectorIndex[int] = VectorIndex(576, sketch_rows=None)
    index.add_many(list(range(400)), raw)
    assert index.search(raw[7], 1.0) == [(7, 1.0), (207, 1.0)]
    zero = np.zeros((2, 8), np.float32)  # zero rows are never similar (as scikit-learn's cosine)
    assert len(cosine_pairs(zero, 0.0)[0]) == 1 and len(cosine_pairs(zero, 0.5)[0]) == 0
