"""Multi-index hashing gives exactly the brute-force answer: all pairs (library) and single queries
(the daemon's HashIndex), radii 0-16, with identical hashes, skewed bits and tiny inputs."""

from __future__ import annotations

import random
from unittest import mock

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from dedupd.core import hamming, hashindex, mih
from dedupd.core.hashindex import HashIndex
from tests.core.test_search import brute_pairs


def hashes(rng: random.Random, n: int, kind: str) -> list[int]:
    """``clustered``: random originals, near copies (0-8 flips) and exact repeats; ``skewed``: few
    bits ever set (low-entropy substrings, huge MIH groups, like flat photos); ``same``: one value."""
    if kind == "same":
        return [rng.getrandbits(64)] * n
    out: list[int] = []
    live = rng.getrandbits(64) if kind == "skewed" else (1 << 64) - 1
    for _ in range(n):
        if out and rng.random() < 0.5:
            v = rng.choice(out)
            for _ in range(rng.randint(0, 8)):
                v ^= 1 << rng.randrange(64)
        else:
            v = rng.getrandbits(64) & (live & rng.getrandbits(64) if kind == "skewed" else live)
        out.append(v)
    return out


def feasible(plan: mih.Plan) -> bool:
    """Plans the cost model could pick (no ball of millions of flip masks)."""
    return all(mih.ball(w, t) <= 1 << 14 for _, w, t in plan.masks())


def pair_set(parts) -> list[tuple[int, int, int]]:
    return [t for i, j, d in parts for t in zip(i.tolist(), j.tolist(), d.tolist())]


KINDS = st.sampled_from(["clustered", "skewed", "same"])


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32), st.integers(0, 250), st.integers(0, 16), st.integers(2, 7), KINDS)
def test_self_join_every_plan_equals_brute_force(seed, n, radius, m, kind):
    plan = mih.make_plan(m, radius)
    assume(feasible(plan))
    values = hashes(random.Random(seed), n, kind)
    got = pair_set(mih.self_join(np.array(values, dtype=np.uint64), radius, plan))
    assert len(got) == len(set(got))  # each pair once
    assert all(i < j for i, j, _ in got)
    assert set(got) == brute_pairs(values, radius)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 400), st.integers(0, 16), st.integers(2, 5), KINDS)
def test_self_join_small_chunks_and_sorted_lookup(seed, n, radius, m, kind):
    """Row blocks, long runs materialised in chunks (one huge group too) and the searchsorted
    lookup of wide substrings."""
    plan = mih.make_plan(m, radius)
    assume(feasible(plan))
    values = hashes(random.Random(seed), n, kind)
    small = {"CHUNK": 7, "MAX_TABLE_BITS": 4, "_BLOCK_ROWS": 3, "_MAX_RUN": 2}
    with mock.patch.multiple(mih, **small):
        got = pair_set(mih.self_join(np.array(values, dtype=np.uint64), radius, plan))
    assert len(got) == len(set(got)) and set(got) == brute_pairs(values, radius)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32), st.integers(0, 800), st.integers(0, 16), KINDS)
def test_library_all_pairs_equals_scan(seed, n, radius, kind):
    """The path find_duplicates takes (plan chosen by the cost model) against the popcount scan."""
    values = hashes(random.Random(seed), n, kind)
    arr = np.array(values, dtype=np.uint64)
    i, j, d = hamming.all_pairs(arr, radius)
    got = list(zip(i.tolist(), j.tolist(), d.tolist()))
    assert got == sorted(got)  # sorted by (i, j)
    assert set(got) == {t for part in [hamming.scan_pairs(arr, radius)] for t in pair_set(part)}
    assert len(got) == len(set(got))


def test_cost_model_picks_mih_at_scale_and_scan_when_tiny():
    assert mih.best_plan(10, 10) is None
    assert mih.best_plan(1_000_000, 10) is not None
    assert mih.best_plan(1_000_000, 40) is None  # too wide a radius for any pigeonhole plan


@pytest.mark.parametrize("width,t", [(16, 2), (21, 3), (12, 0), (5, 5)])
def test_flip_masks_are_the_ball(width, t):
    masks = mih.flip_masks(width, t).tolist()
    assert len(masks) == len(set(masks)) == mih.ball(width, t)
    assert all(m < 1 << width and m.bit_count() <= t for m in masks)


def test_plan_satisfies_pigeonhole():
    for m in range(1, 9):
        for r in range(0, 20):
            plan = mih.make_plan(m, r)
            assert sum(w for _, w in plan.ranges) == 64
            assert sum(t + 1 for t in plan.tolerances if t >= 0) >= r + 1


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 600), st.integers(0, 16), KINDS)
def test_hash_index_search_equals_brute_force_through_changes(seed, n, radius, kind):
    """The daemon's query path with MIH tables (built at 16 rows here), a scanned tail, removals,
    moved keys and compactions, against a dict scanned by brute force."""
    rng = random.Random(seed)
    values = hashes(rng, n, kind)
    # tables from 16 rows and always probed (the cost model would scan such small sets)
    with mock.patch.object(hashindex, "MIN_TABLE_ROWS", 16), mock.patch.object(mih, "_COST_SCAN", 1e12):
        index: HashIndex[int] = HashIndex(capacity=2)
        truth: dict[int, int] = {}
        for step, (k, v) in enumerate(enumerate(values)):
            index.add(k, v)
            truth[k] = v
            if truth and rng.random() < 0.2:
                gone = rng.choice(list(truth))
                assert index.discard(gone)
                del truth[gone]
            if truth and rng.random() < 0.1:
                moved = rng.choice(list(truth))
                truth[moved] = rng.choice(values)
                index.add(moved, truth[moved])
            if step % 37 == 0 or step == n - 1:
                q = rng.choice(values) ^ (1 << rng.randrange(64) if rng.random() < 0.5 else 0)
                got = index.search(q, radius)
                want = {(k2, (v2 ^ q).bit_count()) for k2, v2 in truth.items() if (v2 ^ q).bit_count() <= radius}
                assert len(got) == len(set(got)) and set(got) == want
                assert index._index._tables is not None or index._index._rows <= 16  # built past 16
        assert index.search(values[0], -1) == []
        assert not index.discard(-1)
        assert len(index) == len(truth) and dict(index) == truth
        assert all(index.value_of(k) == v for k, v in truth.items())
        assert list(dict(index)) == [k for k, _ in index]  # insertion order is kept


def test_hash_index_query_order_is_insertion_order():
    index: HashIndex[str] = HashIndex()
    with mock.patch.object(hashindex, "MIN_TABLE_ROWS", 4):
        for k in range(40):
            index.add(f"k{k}", 0xFF00 ^ (1 << (k % 8)))
        assert index.search(0xFF00, 2) and [k for k, _ in index.search(0xFF00, 2)] == [f"k{k}" for k in range(40)]


compiled = pytest.mark.skipif(not mih.compiled_available(), reason="numba (the 'speed' extra) is not installed")


@compiled
@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32), st.integers(0, 300), st.integers(0, 16), st.integers(2, 7), KINDS, st.booleans())
def test_compiled_self_join_equals_numpy_and_brute_force(seed, n, radius, m, kind, tiny):
    """Every plan; ``tiny``: an output buffer that must grow many times and the binary-search
    lookup of wide substrings."""
    plan = mih.make_plan(m, radius)
    assume(feasible(plan))
    values = hashes(random.Random(seed), n, kind)
    arr = np.array(values, dtype=np.uint64)
    with mock.patch.multiple(mih, _MIN_OUT=1 if tiny else mih._MIN_OUT, MAX_TABLE_BITS=4 if tiny else mih.MAX_TABLE_BITS):
        got = pair_set(mih.self_join_compiled(arr, radius, plan))
    assert len(got) == len(set(got)) and all(i < j for i, j, _ in got)
    assert set(got) == set(pair_set(mih.self_join(arr, radius, plan))) == brute_pairs(values, radius)


@compiled
def test_all_pairs_compiled_numpy_and_default_agree_at_scale():
    """30,000 hashes with near copies: the three routes give the same sorted arrays."""
    values = np.array(hashes(random.Random(7), 30_000, "clustered"), dtype=np.uint64)
    want = hamming.all_pairs(values, 10, compiled=False)
    assert len(want[0]) > 10_000
    for route in (True, None):
        got = hamming.all_pairs(values, 10, compiled=route)
        assert all(np.array_equal(a, b) for a, b in zip(got, want))


def test_without_numba_the_numpy_join_runs_and_forcing_compiled_says_why():
    values = np.array(hashes(random.Random(3), 500, "clustered"), dtype=np.uint64)
    want = hamming.all_pairs(values, 8, compiled=False)
    missing = {"checked": True, "kernel": None, "error": "numba is not installed (test)"}
    with mock.patch.object(mih, "_compiled", missing), mock.patch.object(mih, "COMPILED_MIN_COST", 0):
        assert not mih.use_compiled(len(values), mih.make_plan(4, 8))
        got = hamming.all_pairs(values, 8)
        with pytest.raises(RuntimeError, match="numba is not installed"):
            hamming.all_pairs(values, 8, compiled=True)
    assert all(np.array_equal(a, b) for a, b in zip(got, want))
