"""From matched pairs to imagededup's duplicate map, and the files-to-remove rule."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def neighbour_lists(
    n: int, i: np.ndarray, j: np.ndarray, score: np.ndarray, *, descending: bool = False
) -> list[list[tuple[int, Any]]]:
    """Symmetric neighbour lists from unordered pairs ``(i, j, score)``.

    Each list is ordered by score (ascending distance, or ``descending`` similarity) and then by
    index: the order in which imagededup's default brute-force search lists results (a stable
    sort by score of matches found in input order).
    """
    q = np.concatenate([i, j])
    t = np.concatenate([j, i])
    s = np.concatenate([score, score])
    key = -s if descending else s
    order = np.lexsort((t, key, q))
    q, t, s = q[order], t[order], s[order]
    bounds = np.searchsorted(q, np.arange(n + 1))
    ts, ss = t.tolist(), s.tolist()
    return [list(zip(ts[a:b], ss[a:b])) for a, b in zip(bounds[:-1], bounds[1:])]


def duplicate_map(
    names: Sequence[str], neighbours: list[list[tuple[int, Any]]], scores: bool
) -> dict[str, list]:
    """``{name: [dup, ...]}`` or ``{name: [(dup, score), ...]}`` for every name, in input order."""
    if scores:
        return {names[k]: [(names[t], s) for t, s in lst] for k, lst in enumerate(neighbours)}
    return {names[k]: [names[t] for t, _ in lst] for k, lst in enumerate(neighbours)}


def files_to_remove(duplicates: Mapping[str, Sequence]) -> list[str]:
    """imagededup's rule: walk the map in order; a file not already marked marks all its duplicates.

    The reference returns the set in arbitrary order; we return it sorted so results are stable.
    """
    marked: set[str] = set()
    for name, dups in duplicates.items():
        if name not in marked:
            marked.update(d[0] if isinstance(d, tuple | list) else d for d in dups)
    return sorted(marked)
