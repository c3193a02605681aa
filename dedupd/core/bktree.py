"""Incremental BK-tree over 64-bit int hashes under Hamming distance.

Unlike imagededup's tree (built once from a complete dict, recursive, no removal), this one is
built for a daemon: ``add`` and ``discard`` at any time, iterative search (no recursion limit),
several keys may share one hash value (one node), and removed values stay as routing-only
"tombstones" until they outnumber the live nodes, when the tree is rebuilt.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator, Sequence

__all__ = ["BKTree", "imagededup_visit_ranks"]


class _Node:
    __slots__ = ("value", "keys", "children")

    def __init__(self, value: int) -> None:
        self.value = value
        self.keys: dict[Hashable, None] = {}  # insertion-ordered set
        self.children: dict[int, _Node] = {}


class BKTree:
    """A mutable metric tree answering "which keys have a hash within ``radius`` of this one?"."""

    def __init__(self, items: Iterable[tuple[Hashable, int]] = ()) -> None:
        self._root: _Node | None = None
        self._nodes: dict[int, _Node] = {}  # hash value -> node (live or tombstone)
        self._values: dict[Hashable, int] = {}  # key -> hash value
        self._dead = 0  # nodes whose key set is empty
        for key, value in items:
            self.add(key, value)

    def __len__(self) -> int:
        return len(self._values)

    def __contains__(self, key: object) -> bool:
        return key in self._values

    def __iter__(self) -> Iterator[tuple[Hashable, int]]:
        return iter(self._values.items())

    def value_of(self, key: Hashable) -> int:
        return self._values[key]

    def add(self, key: Hashable, value: int) -> None:
        """Insert ``key`` with hash ``value``; re-adding a key moves it to the new value."""
        value = int(value)
        old = self._values.get(key)
        if old is not None:
            if old == value:
                return
            self.discard(key)
        self._values[key] = value
        node = self._nodes.get(value)
        if node is None:
            node = self._insert_node(value)
        elif not node.keys:
            self._dead -= 1
        node.keys[key] = None

    def _insert_node(self, value: int) -> _Node:
        new = _Node(value)
        self._nodes[value] = new
        if self._root is None:
            self._root = new
            return new
        node = self._root
        while True:
            d = (node.value ^ value).bit_count()
            child = node.children.get(d)
            if child is None:
                node.children[d] = new
                return new
            node = child

    def discard(self, key: Hashable) -> bool:
        """Remove ``key``; returns False when it was not present."""
        value = self._values.pop(key, None)
        if value is None:
            return False
        node = self._nodes[value]
        del node.keys[key]
        if not node.keys:
            self._dead += 1
            if self._dead > 1024 and self._dead > len(self._nodes) - self._dead:
                self._rebuild()
        return True

    def _rebuild(self) -> None:
        items = list(self._values.items())
        self._root, self._nodes, self._values, self._dead = None, {}, {}, 0
        for key, value in items:
            self.add(key, value)

    def search(self, value: int, radius: int) -> list[tuple[Hashable, int]]:
        """All ``(key, distance)`` with Hamming distance to ``value`` <= ``radius`` (tree order)."""
        if self._root is None:
            return []
        value = int(value)
        out: list[tuple[Hashable, int]] = []
        stack = [self._root]
        while stack:
            node = stack.pop()
            d = (node.value ^ value).bit_count()
            if d <= radius:
                out.extend((k, d) for k in node.keys)
            lo, hi = d - radius, d + radius
            for cd, child in node.children.items():
                if lo <= cd <= hi:
                    stack.append(child)
        return out


def imagededup_visit_ranks(values: Sequence[int]) -> list[int]:
    """Each item's place in the order imagededup's BK-tree search meets items, for equal distances.

    That tree is built once from the items in order: the first is the root, and each next item
    goes down the child at its distance, or becomes that child. Its search pops nodes from the
    end of a list and pushes the children in range in insertion order. Pruning drops whole
    subtrees, so every query meets the items it finds in one fixed order: the tree's pre-order
    with each node's children last-inserted first. Its results are then sorted by distance
    (stably), so within one distance they keep this order.
    """
    children: list[dict[int, int]] = [{} for _ in values]  # distance -> child, in insertion order
    last_with: dict[int, int] = {}  # value -> the deepest item holding it
    for k, value in enumerate(values):
        if k and (same := last_with.get(value)) is not None:
            children[same][0] = k  # the walk would end below its twins, along their chain of distance-0 children
        elif k:
            node = 0
            while (child := children[node].get(d := (value ^ values[node]).bit_count())) is not None:
                node = child
            children[node][d] = k
        last_with[value] = k
    ranks = [0] * len(values)
    stack = [0] if len(values) else []
    for rank in range(len(values)):
        node = stack.pop()
        ranks[node] = rank
        stack.extend(children[node].values())
    return ranks
