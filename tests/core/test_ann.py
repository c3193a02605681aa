"""The approximate CNN all-pairs (faiss IVF): a subset of the exact pairs with exact scores."""

from __future__ import annotations

import numpy as np
import pytest

from dedupd.core.ann import ann_pairs, check_method
from dedupd.core.vectors import cosine_pairs, normalize_rows

pytest.importorskip("faiss", reason="the test extra installs faiss-cpu (the ann extra)")


def clustered_unit(n: int, d: int, clusters: int, noise: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, d))
    x = centres[rng.integers(0, clusters, n)] + noise * rng.standard_normal((n, d))
    return normalize_rows(x.astype(np.float32))


def as_dict(pairs) -> dict[tuple[int, int], float]:
    return dict(zip(zip(pairs[0].tolist(), pairs[1].tolist()), pairs[2].tolist()))


@pytest.mark.parametrize("threshold", [0.8, 0.95])
def test_ivf_is_a_subset_of_exact_with_exact_scores_and_high_recall(threshold):
    x = clustered_unit(4000, 32, clusters=80, noise=0.35)
    exact = as_dict(cosine_pairs(x, threshold, normalized=True))
    got_arrays = ann_pairs(x, threshold, normalized=True)
    got = as_dict(got_arrays)
    assert len(exact) > 1000
    assert np.all(got_arrays[0] < got_arrays[1])
    assert np.all(np.lexsort((got_arrays[1], got_arrays[0])) == np.arange(len(got))), "sorted by (i, j)"
    # every pair found is an exact pair (but for rounding at the threshold itself), same score
    assert all(p in exact or abs(s - threshold) < 1e-6 for p, s in got.items())
    common = [p for p in got if p in exact]
    np.testing.assert_allclose([got[p] for p in common], [exact[p] for p in common], atol=1e-6)
    assert len(common) / len(exact) >= 0.9, "recall on a clustered set"


def test_probing_every_cell_is_exhaustive():
    x = clustered_unit(2000, 16, clusters=30, noise=0.5, seed=1)
    exact = as_dict(cosine_pairs(x, 0.9, normalized=True))
    got = as_dict(ann_pairs(x, 0.9, normalized=True, nlist=20, nprobe=20))
    assert set(got) == set(exact)


def test_edges_unnormalised_input_and_errors():
    assert [len(a) for a in ann_pairs(np.zeros((0, 8), np.float32), 0.9)] == [0, 0, 0]
    assert [len(a) for a in ann_pairs(np.ones((1, 8), np.float32), 0.9)] == [0, 0, 0]
    x = clustered_unit(500, 8, clusters=5, noise=0.1, seed=2) * 7.0  # the rows are normalised first
    exact = as_dict(cosine_pairs(x, 0.99))
    got = as_dict(ann_pairs(x, 0.99, nlist=4, nprobe=4))
    assert set(got) == set(exact) and len(exact) > 100
    with pytest.raises(ValueError, match="unknown CNN index 'hnsw': use 'exact' or one of ivf"):
        ann_pairs(x, 0.9, method="hnsw")
    assert check_method("ivf") == "ivf"
