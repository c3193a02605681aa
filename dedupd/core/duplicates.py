"""From matched pairs to imagededup's duplicate map, and the files-to-remove rule."""

from __future__ import annotations

import gc
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def _sorted_neighbours(
    n: int, i: np.ndarray, j: np.ndarray, score: np.ndarray, descending: bool, tie: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Both directions of every pair sorted by (row, score, neighbour), or (row, score,
    ``tie[neighbour]``) where a permutation ``tie`` is given: the neighbours, their scores, and
    the ``n + 1`` row bounds into them."""
    q = np.concatenate([i, j])
    t = np.concatenate([j, i])
    s = np.concatenate([score, score])
    last = t if tie is None else tie[t]
    span = int(s.max()) + 1 if len(s) and s.dtype.kind in "iu" and not descending and s.min() >= 0 else 0
    if span and n * n * span < 1 << 62:  # small int scores (distances): one int64 key sorts faster
        order = np.argsort((q * span + s) * n + last, kind="stable")
    else:
        order = np.lexsort((last, -s if descending else s, q))
    q, t, s = q[order], t[order], s[order]
    return t, s, np.searchsorted(q, np.arange(n + 1)).tolist()


def neighbour_lists(
    n: int, i: np.ndarray, j: np.ndarray, score: np.ndarray, *, descending: bool = False
) -> list[list[tuple[int, Any]]]:
    """Symmetric neighbour lists from unordered pairs ``(i, j, score)``.

    Each list is ordered by score (ascending distance, or ``descending`` similarity) and then by
    index: the order in which imagededup's default brute-force search lists results (a stable
    sort by score of matches found in input order).
    """
    t, s, bounds = _sorted_neighbours(n, i, j, score, descending)
    pairs = list(zip(t.tolist(), s.tolist()))
    return [pairs[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def pair_map(
    names: Sequence[str], i: np.ndarray, j: np.ndarray, score: np.ndarray, scores: bool, *,
    descending: bool = False, tie: np.ndarray | None = None, numpy_scores: bool = False,
) -> dict[str, list]:
    """``duplicate_map(names, neighbour_lists(len(names), i, j, score, ...), scores)``, built with
    one vectorised index-to-name take and one list slice per name (no per-pair Python loop).
    Equal scores are listed in index order, or by ``tie`` (a permutation of the indexes). Scores
    are Python numbers, or numpy scalars of ``score``'s dtype with ``numpy_scores``."""
    t, s, bounds = _sorted_neighbours(len(names), i, j, score, descending, tie)
    collecting = gc.isenabled()
    gc.disable()  # millions of new lists and tuples, none cyclic: the collector's passes were half the time
    try:
        dups = np.asarray(names, dtype=object)[t].tolist() if len(t) else []
        items = list(zip(dups, list(s) if numpy_scores else s.tolist())) if scores else dups
        # the slices are made in C (map over slice objects): no bytecode runs per name
        return dict(zip(names, map(items.__getitem__, map(slice, bounds[:-1], bounds[1:]))))
    finally:
        if collecting:
            gc.enable()


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
