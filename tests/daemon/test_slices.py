"""Big containers copied and freed in slices (:mod:`dedupd.daemon.slices`), and the stepwise sort."""

from __future__ import annotations

import gc
import random
import weakref

from dedupd.core.groups import components, sorted_in_steps
from dedupd.daemon.slices import drop_in_steps, keys_of


class Box:
    pass


def test_keys_of_is_list_in_order() -> None:
    d = {f"/p/{random.Random(k).random()}": k for k in range(1000)}
    for step in (1, 7, 1000, 5000):
        assert keys_of(d, step) == list(d)
    assert keys_of({}, 3) == []


def test_drop_in_steps_empties_and_frees() -> None:
    gc.disable()  # freed by reference counting, as in a report write (the collector is paused there)
    try:
        boxes = [Box() for _ in range(50)]
        refs = [weakref.ref(b) for b in boxes]
        d = {k: [b, (k, b)] for k, b in enumerate(boxes)}
        lst = [[b] for b in boxes]
        del boxes
        drop_in_steps(lst, step=7)
        assert lst == [] and all(r() is not None for r in refs), "the dict still holds them"
        drop_in_steps(d)
        assert d == {} and all(r() is None for r in refs)
    finally:
        gc.enable()


def test_sorted_in_steps_with_key_equals_sorted() -> None:
    rng = random.Random(5)
    items = [[f"/p/{rng.randrange(300)}" for _ in range(rng.randrange(2, 6))] for _ in range(500)]
    key = lambda c: (-len(c), c[0])  # noqa: E731 - the groups' order
    for step in (1, 3, 64, 1000):
        assert sorted_in_steps(items, step, key=key) == sorted(items, key=key)
    assert sorted_in_steps([3, 1, 2], 2) == [1, 2, 3]
    adjacency = {a: [b] for a, b in [(1, 2), (2, 1), (3, 4), (4, 3), (4, 5), (5, 4), (6, 7), (7, 6)]}
    assert components(adjacency) == [[3, 4, 5], [1, 2], [6, 7]]
