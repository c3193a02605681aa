"""Duplicate groups from a match graph: the connected components of "is a duplicate of".

Who in a group may be quarantined (only direct matches of the kept copy) is decided by
:func:`dedupd.core.policy.decide_groups`.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any, TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")

#: items sorted per call by :func:`sorted_in_steps` (a few ms of held GIL for paths or groups)
STEP = 1 << 12


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
    return sorted_in_steps(out, key=lambda c: (-len(c), c[0]))


def sorted_in_steps(items: list[T], step: int = STEP, key: Callable[[T], Any] | None = None) -> list[T]:
    """``sorted(items, key=key)``, sorted ``step`` items per call and merged in Python: one sort
    of a hundred thousand groups (a million paths) is a single C call that holds the GIL for
    0.1 s (1 s), a stall for every other thread of a daemon; between the steps others run."""
    if len(items) <= step:
        return sorted(items, key=key)  # type: ignore[type-var,arg-type]
    runs = [sorted(items[k:k + step], key=key) for k in range(0, len(items), step)]  # type: ignore[type-var,arg-type]
    return list(heapq.merge(*runs, key=key))  # type: ignore[arg-type]
