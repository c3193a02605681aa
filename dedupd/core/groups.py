"""Duplicate groups from a match graph, and who may be quarantined in each.

A group is a connected component of the "is a duplicate of" graph. Only members that match the
kept copy *directly* are quarantine victims: A~B and B~C does not make C a duplicate of A.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from typing import TypeVar

K = TypeVar("K", bound=Hashable)


def components(adjacency: Mapping[K, Iterable[K]]) -> list[list[K]]:
    """Connected components with at least two members, each sorted, largest group first."""
    seen: set[K] = set()
    out: list[list[K]] = []
    for start in adjacency:
        if start in seen or not adjacency[start]:
            continue
        seen.add(start)
        stack, comp = [start], [start]
        while stack:
            node = stack.pop()
            for nxt in adjacency.get(node, ()):
                if nxt not in seen:
                    seen.add(nxt)
                    comp.append(nxt)
                    stack.append(nxt)
        out.append(sorted(comp))  # type: ignore[type-var]
    out.sort(key=lambda c: (-len(c), c[0]))
    return out


def direct_victims(keeper: K, group: Iterable[K], adjacency: Mapping[K, Iterable[K]]) -> list[K]:
    """Members of ``group`` that are themselves a duplicate of ``keeper`` (no chains)."""
    direct = set(adjacency.get(keeper, ()))
    return [m for m in group if m != keeper and m in direct]
