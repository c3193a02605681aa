"""HashIndex.add_many (the start-up bulk load) against one add per key."""

from __future__ import annotations

import numpy as np
import pytest

from dedupd.core.hashindex import MIN_TABLE_ROWS, HashIndex, IdHashIndex


def _values(n: int, seed: int) -> list[int]:
    rng = np.random.default_rng(seed)
    v = rng.integers(0, 2**63, size=n, dtype=np.int64).astype(np.uint64) * np.uint64(2) + rng.integers(0, 2, size=n
                                                                                                      ).astype(np.uint64)
    near = rng.integers(0, n, size=n // 3)
    v[near] = v[rng.integers(0, n, size=len(near))] ^ (np.uint64(1) << rng.integers(0, 64, size=len(near)).astype(np.uint64))
    out = [int(x) for x in v]
    out[0], out[1] = 2**64 - 1, 2**63  # the top bit set: no sign trouble
    return out


@pytest.mark.parametrize("n", [300, MIN_TABLE_ROWS + 500])  # scanned / multi-index tables
def test_add_many_into_an_empty_index_equals_one_add_per_key(n: int) -> None:
    values = _values(n, n)
    keys = [f"k{i}".encode() for i in range(n)]
    bulk, one = HashIndex[bytes](), HashIndex[bytes]()
    bulk.add_many(keys, values)
    for k, v in zip(keys, values):
        one.add(k, v)
    assert len(bulk) == n and list(bulk) == list(one)
    for q in (values[0], values[1], values[n // 2], values[-1]):
        for radius in (0, 4, 10):
            assert bulk.search(q, radius) == one.search(q, radius)
    # it stays a normal mutable index afterwards
    bulk.discard(keys[1])
    bulk.add(b"new", values[1])
    assert keys[1] not in bulk and bulk.value_of(b"new") == values[1]
    assert [k for k, _ in bulk.search(values[1], 0)] == [b"new"]


def test_add_many_with_repeated_keys_or_a_filled_index_is_add_in_order() -> None:
    idx = HashIndex[str]()
    idx.add_many(["a", "b", "a"], [1, 2, 3])  # the later value wins, as with add
    assert sorted(idx) == [("a", 3), ("b", 2)]
    idx.add_many(["c", "b"], [7, 8])
    assert sorted(idx) == [("a", 3), ("b", 8), ("c", 7)]
    with pytest.raises(ValueError):
        HashIndex[str]().add_many(["x", "y"], [1])


@pytest.mark.parametrize("n", [300, MIN_TABLE_ROWS + 500])
def test_id_index_with_sparse_ids_equals_a_keyed_index(n: int) -> None:
    """IdHashIndex (the daemon's columns: int ids, numpy maps) answers as HashIndex does, bulk
    loaded with sparse ids, then through discards, moves and reused ids."""
    values = _values(n, n + 1)
    rng = np.random.default_rng(n)
    ids = rng.choice(10 * n, size=n, replace=False)
    bulk, keyed = IdHashIndex(capacity=2), HashIndex[int]()
    bulk.add_many(ids, values)
    keyed.add_many(ids.tolist(), values)
    assert len(bulk) == n and list(bulk) == list(keyed)

    def same(q: int) -> None:
        for radius in (0, 4, 10):
            assert bulk.search(q, radius) == keyed.search(q, radius)

    for q in (values[0], values[1], values[-1]):
        same(q)
    for i in ids[:50].tolist():  # gone, then back under a moved value: reused ids
        assert bulk.discard(i) and keyed.discard(i)
    for i in ids[:25].tolist():
        bulk.add(i, values[1])
        keyed.add(i, values[1])
    bulk.add(int(ids[60]), values[0])  # moved
    keyed.add(int(ids[60]), values[0])
    assert not bulk.discard(int(ids[30])) and int(ids[30]) not in bulk and int(ids[0]) in bulk
    assert bulk.value_of(int(ids[60])) == values[0] and len(bulk) == n - 25
    assert sorted(bulk) == sorted(keyed)
    same(values[0])
    same(values[1])
    with pytest.raises(ValueError):
        bulk.add(-1, 0)
    with pytest.raises(KeyError):
        bulk.value_of(10 * n + 5)


def test_id_index_add_many_with_repeated_or_negative_ids_is_add_in_order() -> None:
    idx = IdHashIndex()
    idx.add_many(np.array([5, 9, 5]), [1, 2, 3])  # the later value wins, as with add
    assert sorted(idx) == [(5, 3), (9, 2)] and len(idx) == 2
    idx.add_many([], [])
    idx.add_many([2, 9], [7, 8])
    assert sorted(idx) == [(2, 7), (5, 3), (9, 8)]
    with pytest.raises(ValueError):
        IdHashIndex().add_many([0, -1], [1, 2])
    with pytest.raises(ValueError):
        IdHashIndex().add_many([0, 1], [1])
