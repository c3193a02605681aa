"""``engine="ray"`` for the library API (``encode_images``, ``find_duplicates``): the same results
as the local path, the files encoded and the pairs searched on a Ray cluster.

The library joins the cluster Ray is already connected to (``ray.init(...)`` by the caller), else
the one ``RAY_ADDRESS`` names, else it starts a private Ray on this machine; it leaves the
connection open for the next call (``ray.shutdown()`` ends it). File paths must name the same
files on every node (shared storage).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

from dedupd.core.blocks import Pairs
from dedupd.core.vectors import normalize_rows
from dedupd.engines import ray_pairs
from dedupd.engines.ray_runtime import check_address, require_ray, stream
from dedupd.parallel import Progress

T = TypeVar("T")
R = TypeVar("R")

#: items per Ray task of :func:`ray_map`
MAP_BATCH = 32


def ray_session() -> Any:
    """The ``ray`` module, connected (see the module docstring for to what)."""
    ray = require_ray()
    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS") or None
        if address:
            check_address(address, named_by="RAY_ADDRESS")
        ray.init(address=address, logging_level=logging.WARNING,
                 **({} if address else {"include_dashboard": False}))
    return ray


def apply_all(func: Callable[[T], R], items: Sequence[T], start: int = 0) -> list[R]:
    """Ray task: ``[func(x) for x in items]`` (``start``: where ``items`` begin, for the caller)."""
    return [func(x) for x in items]


def ray_map(func: Callable[[T], R], items: Sequence[T], workers: int | None = None, *, label: str = "",
            verbose: bool = False) -> list[R]:
    """:func:`dedupd.parallel.pmap` on Ray, in input order (``workers`` is ignored: the cluster's CPUs decide)."""
    ray = ray_session()
    items = list(items)
    out: list[Any] = [None] * len(items)
    progress = Progress(len(items), label, verbose)
    batches = ((func, items[k:k + MAP_BATCH], k) for k in range(0, len(items), MAP_BATCH))
    for (_, _, start), results in stream(ray, apply_all, batches):
        out[start:start + len(results)] = results
        progress.advance(len(results))
    return out


def hamming_all_pairs(values: np.ndarray, radius: int) -> Pairs:
    """:func:`dedupd.core.hamming.all_pairs` on Ray."""
    return ray_pairs.hamming_pairs(ray_session(), values, radius)


def cosine_all_pairs(x: np.ndarray, threshold: float) -> Pairs:
    """:func:`dedupd.core.vectors.cosine_pairs` (rows not yet normalised) on Ray."""
    return ray_pairs.cosine_pairs(ray_session(), normalize_rows(x, dtype=None), threshold)
