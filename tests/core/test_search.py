"""BK-tree and vectorised scan give exactly the brute-force answer; result assembly rules."""

from __future__ import annotations

import random

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from dedupd.core import hamming
from dedupd.core.bktree import BKTree
from dedupd.core.duplicates import duplicate_map, files_to_remove, neighbour_lists, pair_map


def brute_pairs(values: list[int], radius: int) -> set[tuple[int, int, int]]:
    return {
        (i, j, (values[i] ^ values[j]).bit_count())
        for i in range(len(values))
        for j in range(i + 1, len(values))
        if (values[i] ^ values[j]).bit_count() <= radius
    }


def clustered(rng: random.Random, n: int) -> list[int]:
    """Random hashes with near-duplicates (few flipped bits) and exact repeats."""
    out: list[int] = []
    for _ in range(n):
        if out and rng.random() < 0.5:
            v = rng.choice(out)
            for _ in range(rng.randint(0, 6)):
                v ^= 1 << rng.randrange(64)
        else:
            v = rng.getrandbits(64)
        out.append(v)
    return out


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32), st.integers(0, 300), st.integers(0, 64))
def test_all_pairs_equals_brute_force(seed, n, radius):
    values = clustered(random.Random(seed), n)
    i, j, d = hamming.all_pairs(np.array(values, dtype=np.uint64), radius)
    assert set(zip(i.tolist(), j.tolist(), d.tolist())) == brute_pairs(values, radius)
    assert len(i) == len(set(zip(i.tolist(), j.tolist())))


def test_all_pairs_block_boundaries(monkeypatch):
    monkeypatch.setattr(hamming, "_BLOCK_ELEMENTS", 50)  # force many tiny row blocks
    values = clustered(random.Random(7), 120)
    got = [t for i, j, d in hamming.scan_pairs(np.array(values, dtype=np.uint64), 12) for t in zip(i.tolist(), j.tolist(), d.tolist())]
    assert len(got) == len(set(got)) and set(got) == brute_pairs(values, 12)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 200), st.integers(0, 20))
def test_bktree_search_equals_brute_force(seed, n, radius):
    rng = random.Random(seed)
    values = clustered(rng, n)
    tree = BKTree((k, v) for k, v in enumerate(values))
    q = rng.choice(values) ^ (1 << rng.randrange(64))
    expected = {(k, (v ^ q).bit_count()) for k, v in enumerate(values) if (v ^ q).bit_count() <= radius}
    assert set(tree.search(q, radius)) == expected
    idx, dist = hamming.within(q, np.array(values, dtype=np.uint64), radius)
    assert set(zip(idx.tolist(), dist.tolist())) == expected


def test_bktree_add_discard_readd_and_rebuild():
    rng = random.Random(3)
    values = clustered(rng, 3000)
    tree = BKTree()
    for k, v in enumerate(values):
        tree.add(k, v)
    removed = set(rng.sample(range(3000), 2500))  # enough tombstones to trigger a rebuild
    for k in removed:
        assert tree.discard(k)
    assert not tree.discard(removed.pop())
    assert len(tree) == 500
    for k in list(removed)[:100]:
        tree.add(k, values[k])  # re-add after removal
    live = {k: v for k, v in tree}
    q = values[0]
    expected = {(k, (v ^ q).bit_count()) for k, v in live.items() if (v ^ q).bit_count() <= 10}
    assert set(tree.search(q, 10)) == expected
    tree.add(0, values[0] ^ 0xFF)  # moving a key to a new value
    assert tree.value_of(0) == values[0] ^ 0xFF and len([k for k, _ in tree.search(values[0] ^ 0xFF, 0) if k == 0]) == 1


def test_neighbour_lists_order_and_symmetry():
    i, j, d = np.array([0, 0, 1, 2]), np.array([1, 2, 2, 3]), np.array([3, 1, 1, 0])
    lists = neighbour_lists(4, i, j, d)
    assert lists[0] == [(2, 1), (1, 3)]
    assert lists[2] == [(3, 0), (0, 1), (1, 1)]  # by distance, then index
    sims = neighbour_lists(3, np.array([0, 0]), np.array([1, 2]), np.array([0.5, 0.9]), descending=True)
    assert sims[0] == [(2, 0.9), (1, 0.5)]
    names = ["a", "b", "c", "d"]
    assert duplicate_map(names, lists, scores=False)["c"] == ["d", "a", "b"]
    assert duplicate_map(names, lists, scores=True)["d"] == [("c", 0)]



@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32), st.integers(0, 200), st.integers(0, 64), st.booleans(), st.booleans())
def test_pair_map_equals_duplicate_map_of_neighbour_lists(seed, n, radius, scores, descending):
    """The vectorised builder gives the same dict (keys in input order, same values, same score
    types) with a fresh list per name."""
    values = clustered(random.Random(seed), n)
    i, j, d = hamming.all_pairs(np.array(values, dtype=np.uint64), radius)
    score = d / 64.0 if descending else d  # similarities (floats, largest first) as the CNN path has
    names = [f"f{k:03d}.jpg" for k in reversed(range(n))]
    got = pair_map(names, i, j, score, scores, descending=descending)
    want = duplicate_map(names, neighbour_lists(n, i, j, score, descending=descending), scores)
    assert list(got) == list(want) and got == want
    assert [type(s) for v in got.values() for _, s in (v if scores else [])] == [
        type(s) for v in want.values() for _, s in (v if scores else [])]
    assert len({id(v) for v in got.values()}) == n

def test_files_to_remove_follows_map_order():
    dup = {"b": ["a"], "a": ["b", "c"], "c": ["a"], "d": []}
    assert files_to_remove(dup) == ["a"]  # "b" comes first and keeps itself
    assert files_to_remove({"a": [("b", 1)], "b": [("a", 1)]}) == ["b"]


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 400), st.integers(0, 20))
def test_hash_index_matches_bktree_through_adds_and_discards(seed, n, radius):
    from dedupd.core.hashindex import HashIndex

    rng = random.Random(seed)
    values = clustered(rng, n)
    index, tree = HashIndex(capacity=2), BKTree()
    for k, v in enumerate(values):
        index.add(k, v)
        tree.add(k, v)
    for k in rng.sample(range(n), n // 3):
        assert index.discard(k) == tree.discard(k)
    index.add(0, values[-1])  # re-add / move a key
    tree.add(0, values[-1])
    q = rng.choice(values)
    assert sorted(index.search(q, radius)) == sorted(tree.search(q, radius))
    assert len(index) == len(tree) and dict(index) == dict(tree)
