"""``evaluate``: score a retrieved duplicate map against a ground truth, as imagededup does.

Validation runs in the reference's order (ground truth closed and symmetric, then the retrieved
map, then same keys, then the metric name), so the first problem reported is the same one. Every
map problem raises :class:`MapValidationError`, which is both a ``ValueError`` and an
``AssertionError``: callers catching what imagededup raised there (``AssertionError``, or
``Exception`` for mismatched keys) keep working, without validation by ``assert``.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Iterable, Mapping
from typing import Any

import numpy as np

from dedupd.errors import ArgumentTypeError, DedupdError
from dedupd.evaluation import metrics

logger = logging.getLogger(__name__)

#: Accepted values of ``evaluate(metric=...)`` (case-insensitive).
METRICS: tuple[str, ...] = ("map", "ndcg", "jaccard", "classification", "all")

_SHOWN = 5  # names quoted in an error message before "..."


class MapValidationError(DedupdError, ValueError, AssertionError):
    """A ground-truth or retrieved map is not closed, not symmetric, or the two disagree on keys."""


class MapValueTypeError(MapValidationError, TypeError):
    """A map's value is not a list of filenames (the reference's ``TypeError``: not iterable)."""


def _preview(names: Iterable[Any]) -> str:
    ordered = sorted(names, key=repr)
    shown = ", ".join(repr(n) for n in ordered[:_SHOWN])
    return f"{shown}, ... ({len(ordered)} in all)" if len(ordered) > _SHOWN else shown


def _normalise(mapping: Any, label: str) -> dict[Hashable, list[Any]]:
    """Check the container types and return ``{name: list of duplicate names}``."""
    if not isinstance(mapping, Mapping):
        raise ArgumentTypeError(
            f"{label} map must be a dict of filename -> list of duplicate filenames, "
            f"got {type(mapping).__name__}"
        )
    result: dict[Hashable, list[Any]] = {}
    for key, value in mapping.items():
        if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
            raise MapValueTypeError(
                f"{label} map: the value for {key!r} must be a list of filenames, got {type(value).__name__}"
            )
        result[key] = list(value)
    return result


def _check_map(mapping: dict[Hashable, list[Any]], label: str) -> None:
    """Every listed duplicate must be a key, and every duplicate relation must go both ways."""
    keys = mapping.keys()
    strangers = {name for dups in mapping.values() for name in dups if not _is_key(name, keys)}
    if strangers:
        hint = ""
        if any(isinstance(name, tuple) for name in strangers):
            hint = " (entries look like (filename, score) tuples: pass a map without scores)"
        raise MapValidationError(
            f"{label} map lists duplicates that are not keys of the map: {_preview(strangers)}{hint}"
        )
    for key, dups in mapping.items():
        for other in dups:
            if key not in mapping[other]:
                raise MapValidationError(
                    f"{label} map is not symmetric: {key!r} lists {other!r} as a duplicate, "
                    f"but {other!r} does not list {key!r}"
                )


def _is_key(name: Any, keys: Any) -> bool:
    try:
        return name in keys
    except TypeError:  # unhashable entry, e.g. a list: certainly not a key
        return False


def _check_maps(ground_truth: dict[Hashable, list[Any]], retrieved: dict[Hashable, list[Any]]) -> None:
    logger.debug("validating ground truth map (%d files)", len(ground_truth))
    _check_map(ground_truth, "ground truth")
    logger.debug("validating retrieved map (%d files)", len(retrieved))
    _check_map(retrieved, "retrieved")
    if ground_truth.keys() != retrieved.keys():
        only_truth = ground_truth.keys() - retrieved.keys()
        only_retrieved = retrieved.keys() - ground_truth.keys()
        parts = []
        if only_truth:
            parts.append(f"only in ground truth: {_preview(only_truth)}")
        if only_retrieved:
            parts.append(f"only in retrieved map: {_preview(only_retrieved)}")
        raise MapValidationError(
            "ground truth and retrieved map must have the same keys; " + "; ".join(parts)
        )


def evaluate(
    ground_truth_map: dict | None = None,
    retrieved_map: dict | None = None,
    metric: str = "all",
) -> dict[str, np.float64 | np.ndarray]:
    """Score a retrieved duplicate map against a ground-truth map.

    Args:
        ground_truth_map: filename -> list of its true duplicates; must be symmetric and closed
            (every listed file is also a key).
        retrieved_map: filename -> list of retrieved duplicates (best first, as ``find_duplicates``
            returns them without scores); same keys, also symmetric and closed.
        metric: ``'map'``, ``'ndcg'``, ``'jaccard'``, ``'classification'`` or ``'all'``
            (case-insensitive).

    Returns:
        ``{'map' | 'ndcg' | 'jaccard': np.float64}`` for a retrieval metric (mean over all files);
        ``{'precision', 'recall', 'f1_score', 'support'}`` for ``'classification'``, each a numpy
        array with the value for non-duplicate pairs (class 0) then duplicate pairs (class 1),
        a class being left out when no pair has it; ``'all'`` returns both, retrieval first.

    Raises:
        ArgumentTypeError: a map is not a dict, or ``metric`` is not a string (a ``TypeError`` and,
            as the reference failed there, an ``AttributeError``).
        MapValidationError: a map lists files that are not keys, is not symmetric, or the two maps
            have different keys.
        ValueError: unknown ``metric``; or fewer than two files for the classification metrics.

    Example:
        >>> evaluate({'a.jpg': ['b.jpg'], 'b.jpg': ['a.jpg']},
        ...          {'a.jpg': ['b.jpg'], 'b.jpg': ['a.jpg']}, metric='map')
        {'map': np.float64(1.0)}
    """
    if not isinstance(metric, str):
        raise ArgumentTypeError(f"metric must be a string, one of {', '.join(METRICS)}; got {type(metric).__name__}")
    metric = metric.lower()
    ground_truth = _normalise(ground_truth_map, "ground truth")
    retrieved = _normalise(retrieved_map, "retrieved")
    _check_maps(ground_truth, retrieved)

    if metric in metrics.RETRIEVAL_METRICS:
        return {metric: metrics.mean_metric(ground_truth, retrieved, metric)}
    if metric == "classification":
        result: dict[str, Any] = dict(metrics.classification_metrics(ground_truth, retrieved))
    elif metric == "all":
        result = dict(metrics.retrieval_metrics(ground_truth, retrieved))
        result.update(metrics.classification_metrics(ground_truth, retrieved))
    else:
        raise ValueError(f"unknown metric {metric!r}; acceptable metrics are: {', '.join(METRICS)}")
    logger.debug(
        "pair classification: precision=%s recall=%s f1=%s support=%s",
        result["precision"], result["recall"], result["f1_score"], result["support"],
    )
    return result
