"""Duplicate groups from a match graph: the connected components of "is a duplicate of".

Who in a group may be quarantined (only direct matches of the kept copy) is decided by
:func:`dedupd.core.policy.decide_groups`.
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
