"""Pure metric functions behind :func:`dedupd.evaluation.evaluate` (no I/O, numpy only).

The numbers match imagededup 0.3.3's ``handlers.metrics`` float for float:

* the per-query retrieval metrics (average precision, NDCG, Jaccard) use the same edge-case rules
  (both lists empty: 1.0; exactly one empty: 0.0) and the same summation order, and are averaged
  with ``np.mean`` in ground-truth key order;
* the pair classification treats every unordered pair of distinct files as one sample, labelled
  1 (duplicate) or 0 (not duplicate), and reports precision, recall, F1 and support for each
  class that occurs, as scikit-learn's ``precision_recall_fscore_support`` does (undefined
  ratios are 0.0). Unlike the reference, the pairs are never enumerated: the four confusion counts
  are derived from the positive pairs alone, so the cost grows with the number of duplicates, not
  with the square of the number of files.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence

import numpy as np

MetricFunc = Callable[[Sequence[Hashable], Sequence[Hashable]], float]


def _relevance(correct: Sequence[Hashable], retrieved: Sequence[Hashable]) -> np.ndarray:
    """0/1 int array: whether each retrieved name (in retrieval order) is a correct duplicate."""
    wanted = set(correct)
    return np.array([1 if name in wanted else 0 for name in retrieved], dtype=np.int64)


def _trivial(correct: Sequence[Hashable], retrieved: Sequence[Hashable]) -> float | None:
    """The shared edge cases: 1.0 when both lists are empty, 0.0 when only one is, else None."""
    if len(correct) == 0 and len(retrieved) == 0:
        return 1.0
    if len(correct) == 0 or len(retrieved) == 0:
        return 0.0
    return None


def average_precision(correct: Sequence[Hashable], retrieved: Sequence[Hashable]) -> float:
    """Average precision of one query's ranked retrievals.

    Args:
        correct: ground-truth duplicates of the query.
        retrieved: retrieved duplicates, best first. A name listed twice counts twice, as in the
            reference (so the result can then exceed 1).

    Returns:
        Sum of precision@k over the relevant ranks k, divided by ``len(correct)``.
    """
    edge = _trivial(correct, retrieved)
    if edge is not None:
        return edge
    rel = _relevance(correct, retrieved)
    precision_at_k = np.cumsum(rel) / np.arange(1, rel.size + 1)
    return float(np.sum(rel * precision_at_k) / len(correct))


def _dcg(rel: np.ndarray) -> float:
    gains = (2**rel - 1) / np.log2(np.arange(rel.size) + 2)
    return float(np.sum(gains))


def ndcg(correct: Sequence[Hashable], retrieved: Sequence[Hashable]) -> float:
    """Normalised discounted cumulative gain of one query's ranked retrievals.

    The ideal ranking is the retrieved list's own relevances sorted best first (as in the
    reference), so missed duplicates lower NDCG only through the edge cases.

    Args:
        correct: ground-truth duplicates of the query.
        retrieved: retrieved duplicates, best first.

    Returns:
        DCG / ideal DCG, in [0, 1].
    """
    edge = _trivial(correct, retrieved)
    if edge is not None:
        return edge
    rel = _relevance(correct, retrieved)
    dcg = _dcg(rel)
    if dcg == 0:
        return 0.0
    return dcg / _dcg(np.sort(rel)[::-1])


def jaccard(correct: Sequence[Hashable], retrieved: Sequence[Hashable]) -> float:
    """Jaccard similarity of one query's correct and retrieved duplicate sets.

    Args:
        correct: ground-truth duplicates of the query.
        retrieved: retrieved duplicates (order and repetition ignored).

    Returns:
        ``|correct ∩ retrieved| / |correct ∪ retrieved|``.
    """
    edge = _trivial(correct, retrieved)
    if edge is not None:
        return edge
    correct_set, retrieved_set = set(correct), set(retrieved)
    return len(correct_set & retrieved_set) / len(correct_set | retrieved_set)


#: Retrieval metric names accepted by :func:`mean_metric`, mapped to their per-query function.
RETRIEVAL_METRICS: dict[str, MetricFunc] = {"map": average_precision, "ndcg": ndcg, "jaccard": jaccard}


def mean_metric(
    ground_truth: Mapping[Hashable, Sequence[Hashable]],
    retrieved: Mapping[Hashable, Sequence[Hashable]],
    metric: str,
) -> np.float64:
    """Mean of one retrieval metric over every query (every key of ``ground_truth``).

    Args:
        ground_truth: file name -> its true duplicates.
        retrieved: file name -> its retrieved duplicates; must have every key of ``ground_truth``.
        metric: ``'map'``, ``'ndcg'`` or ``'jaccard'``.

    Returns:
        The mean as ``np.float64``; NaN, with numpy's warnings, when there is no query (the reference's ``np.mean([])``).

    Raises:
        KeyError: unknown metric name.
    """
    func = RETRIEVAL_METRICS[metric]
    values = np.array([func(ground_truth[q], retrieved[q]) for q in ground_truth], dtype=np.float64)
    return np.mean(values)  # no query: NaN with numpy's RuntimeWarnings ("Mean of empty slice"), as the reference


def retrieval_metrics(
    ground_truth: Mapping[Hashable, Sequence[Hashable]],
    retrieved: Mapping[Hashable, Sequence[Hashable]],
) -> dict[str, np.float64]:
    """``{'map': ..., 'ndcg': ..., 'jaccard': ...}``, each the mean over all queries."""
    return {name: mean_metric(ground_truth, retrieved, name) for name in RETRIEVAL_METRICS}


def duplicate_pairs(mapping: Mapping[Hashable, Iterable[Hashable]]) -> set[frozenset[Hashable]]:
    """Unordered pairs of distinct files that ``mapping`` declares duplicates (self-pairs dropped)."""
    return {frozenset((key, other)) for key, others in mapping.items() for other in others if other != key}


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Element-wise float division that yields 0.0 where the denominator is 0 (sklearn's default)."""
    den = denominator.astype(np.float64)
    zero = den == 0
    den[zero] = 1.0
    result = numerator.astype(np.float64) / den
    result[zero] = 0.0
    return result


def classification_metrics(
    ground_truth: Mapping[Hashable, Sequence[Hashable]],
    retrieved: Mapping[Hashable, Sequence[Hashable]],
) -> dict[str, np.ndarray]:
    """Per-class precision, recall, F1 and support of the duplicate / non-duplicate pair labels.

    Every unordered pair of distinct keys of ``ground_truth`` is a sample; its true label is 1 when
    the ground truth lists the two as duplicates, and its predicted label is 1 when ``retrieved``
    does. Only classes that occur in the true or predicted labels are reported, in the order
    class 0 (non-duplicate pairs), class 1 (duplicate pairs), so the arrays have length 2 unless
    every pair has the same label in both maps.

    Args:
        ground_truth: file name -> its true duplicates; its keys define the files.
        retrieved: file name -> its retrieved duplicates, over the same keys.

    Returns:
        ``{'precision', 'recall', 'f1_score'}`` as float64 arrays and ``'support'`` (number of
        true pairs per class) as an int64 array (float64 when no pair is classified correctly,
        as scikit-learn returns it).

    Raises:
        ValueError: fewer than two files, so there is no pair to classify.
    """
    n_files = len(ground_truth)
    n_pairs = n_files * (n_files - 1) // 2
    if n_pairs == 0:
        raise ValueError(
            f"classification metrics need at least two files (one pair); the maps have {n_files}"
        )
    true_pos = duplicate_pairs(ground_truth)
    pred_pos = duplicate_pairs(retrieved)
    tp = len(true_pos & pred_pos)
    fp = len(pred_pos - true_pos)
    fn = len(true_pos - pred_pos)
    tn = n_pairs - tp - fp - fn
    # Rows: class 0 then class 1. Class 0's true positives are the true negatives of class 1, etc.
    hits = np.array([tn, tp], dtype=np.int64)
    predicted = np.array([tn + fn, tp + fp], dtype=np.int64)
    actual = np.array([tn + fp, tp + fn], dtype=np.int64)
    present = np.array([n_pairs - tp > 0, tp + fp + fn > 0])
    hits, predicted, actual = hits[present], predicted[present], actual[present]
    # scikit-learn's quirk, kept for type fidelity: when no pair is classified correctly its
    # confusion counts (and so the support) come out as float64 instead of int64.
    support = actual if tp + tn else actual.astype(np.float64)
    return {
        "precision": _safe_divide(hits, predicted),
        "recall": _safe_divide(hits, actual),
        "f1_score": _safe_divide(2.0 * hits, actual.astype(np.float64) + predicted),
        "support": support,
    }
