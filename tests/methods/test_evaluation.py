"""dedupd.evaluation.evaluate against imagededup's evaluate: hand-made maps, random maps, a real corpus."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dedupd.evaluation import MapValidationError, evaluate
from dedupd.evaluation import metrics as M

ref_eval = pytest.importorskip("imagededup.evaluation")
from sklearn.exceptions import UndefinedMetricWarning  # noqa: E402  (imagededup's dependency)

CORPUS_SCRIPT = Path("/work/shared/corpus/make_corpus.py")
METRICS = ("map", "ndcg", "jaccard", "classification", "all")


def reference(ground_truth: dict, retrieved: dict, metric: str = "all") -> dict:
    """imagededup's evaluate, with its zero-division and empty-mean warnings silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        warnings.filterwarnings("ignore", "Mean of empty slice", RuntimeWarning)
        warnings.filterwarnings("ignore", "invalid value encountered", RuntimeWarning)
        return ref_eval.evaluate(ground_truth, retrieved, metric=metric)


def assert_same(ours: dict, theirs: dict, exact: bool = True) -> None:
    assert list(ours) == list(theirs)
    for key, expected in theirs.items():
        got = ours[key]
        assert type(got) is type(expected), key
        if isinstance(expected, np.ndarray):
            assert got.dtype == expected.dtype and got.shape == expected.shape, key
        if exact:
            np.testing.assert_array_equal(got, expected, err_msg=key, strict=True)
        else:
            np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0, err_msg=key)


def check_all_metrics(ground_truth: dict, retrieved: dict, exact: bool = True) -> None:
    for metric in METRICS:
        ours = evaluate(ground_truth, retrieved, metric)
        assert_same(ours, reference(ground_truth, retrieved, metric), exact)


def sym(groups: list[list[str]], singles: tuple[str, ...] = ()) -> dict[str, list[str]]:
    """Symmetric map in which every group's members are duplicates of each other."""
    out: dict[str, list[str]] = {s: [] for s in singles}
    for group in groups:
        for name in group:
            out[name] = [other for other in group if other != name]
    return out


FILES = ("a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg")
TRUTH = sym([["a.jpg", "b.jpg", "c.jpg"]], ("d.jpg", "e.jpg"))

HAND_CASES = {
    "all_correct": (TRUTH, TRUTH),
    "empty_retrievals": (TRUTH, {f: [] for f in FILES}),
    "none_correct": (TRUTH, sym([["a.jpg", "d.jpg"], ["b.jpg", "e.jpg"]], ("c.jpg",))),
    "partial": (TRUTH, sym([["a.jpg", "b.jpg"]], ("c.jpg", "d.jpg", "e.jpg"))),
    "extra_retrievals": (TRUTH, sym([["a.jpg", "b.jpg", "c.jpg", "d.jpg"]], ("e.jpg",))),
    "order_matters": (
        TRUTH,
        {"a.jpg": ["d.jpg", "b.jpg"], "b.jpg": ["a.jpg"], "c.jpg": [], "d.jpg": ["a.jpg"], "e.jpg": []},
    ),
    "no_truth_duplicates": ({f: [] for f in FILES}, sym([["a.jpg", "e.jpg"]], ("b.jpg", "c.jpg", "d.jpg"))),
    "no_duplicates_anywhere": ({f: [] for f in FILES}, {f: [] for f in FILES}),
    "two_files_both_duplicates": (sym([["x", "y"]]), sym([["x", "y"]])),
    "every_pair_duplicate": (sym([list(FILES)]), sym([list(FILES)])),
    "self_pairs": ({"a": ["a"], "b": [], "c": []}, {"a": [], "b": ["b"], "c": []}),
    "repeated_retrieval": (sym([["a", "b"]], ("c",)), {"a": ["b", "b"], "b": ["a"], "c": []}),
    "tuple_values": ({"a": ("b",), "b": ("a",), "c": ()}, {"a": ("b",), "b": ("a",), "c": ()}),
    "nested_names": (
        sym([["2023/x y.jpg", "Family/x.png"]], ("top.webp",)),
        sym([["2023/x y.jpg", "top.webp"]], ("Family/x.png",)),
    ),
}


@pytest.mark.parametrize("case", sorted(HAND_CASES))
def test_hand_made_maps_match_reference(case: str) -> None:
    check_all_metrics(*HAND_CASES[case])


def test_metric_name_is_case_insensitive() -> None:
    for metric in ("MAP", "Ndcg", "ALL", "Classification"):
        assert_same(evaluate(TRUTH, TRUTH, metric), reference(TRUTH, TRUTH, metric))


def test_default_metric_is_all_and_key_order() -> None:
    result = evaluate(ground_truth_map=TRUTH, retrieved_map=HAND_CASES["partial"][1])
    assert list(result) == ["map", "ndcg", "jaccard", "precision", "recall", "f1_score", "support"]


def test_single_file_and_empty_maps() -> None:
    one = {"a": []}
    assert_same(evaluate(one, one, "map"), reference(one, one, "map"))
    assert np.isnan(reference({}, {}, "map")["map"])
    for metric in ("map", "ndcg", "jaccard"):  # numpy's empty-mean warnings, as the reference's
        with warnings.catch_warnings(record=True) as ours:
            warnings.simplefilter("always")
            assert np.isnan(evaluate({}, {}, metric)[metric])
        with warnings.catch_warnings(record=True) as ref:
            warnings.simplefilter("always")
            ref_eval.evaluate({}, {}, metric=metric)
        assert [(w.category, str(w.message)) for w in ours] == [(w.category, str(w.message)) for w in ref]
        assert "Mean of empty slice" in str(ours[0].message)
    for ground_truth in ({}, one):
        for metric in ("classification", "all"):
            with pytest.raises(ValueError):
                reference(ground_truth, ground_truth, metric)
            with pytest.raises(ValueError, match="at least two files"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # 'all' of no file: the empty means first
                evaluate(ground_truth, ground_truth, metric)


# --- random maps -----------------------------------------------------------------------------


@st.composite
def random_maps(draw: st.DrawFn) -> tuple[dict, dict]:
    n = draw(st.integers(2, 12))
    names = [f"dir{i % 3}/img_{i}.jpg" for i in range(n)]
    all_pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]

    def graph(allow_self: bool) -> dict[str, list[str]]:
        edges = draw(st.lists(st.sampled_from(all_pairs), unique=True, max_size=len(all_pairs)))
        out: dict[str, list[str]] = {name: [] for name in draw(st.permutations(names))}
        for i, j in edges:
            out[names[i]].append(names[j])
            out[names[j]].append(names[i])
        if allow_self:
            for name in draw(st.lists(st.sampled_from(names), unique=True, max_size=2)):
                out[name].append(name)
        for name in out:
            out[name] = draw(st.permutations(out[name]))  # retrieval order matters for MAP and NDCG
        return out

    ground_truth = graph(allow_self=draw(st.booleans()))
    retrieved = graph(allow_self=False)
    return ground_truth, retrieved


@settings(max_examples=300, deadline=None)
@given(random_maps())
def test_random_maps_match_reference(maps: tuple[dict, dict]) -> None:
    check_all_metrics(*maps)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from("abcdefgh"), unique=True, max_size=8),
    st.lists(st.sampled_from("abcdefghij"), max_size=10),
)
def test_per_query_metrics_match_reference(correct: list[str], retrieved: list[str]) -> None:
    from imagededup.handlers.metrics import information_retrieval as ir

    assert M.average_precision(correct, retrieved) == ir.avg_prec(correct, retrieved)
    assert M.ndcg(correct, retrieved) == ir.ndcg(correct, retrieved)
    assert M.jaccard(correct, retrieved) == ir.jaccard_similarity(correct, retrieved)


# --- real corpus -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[str]]]:
    if not CORPUS_SCRIPT.exists():
        pytest.skip(f"{CORPUS_SCRIPT} not available")
    root = tmp_path_factory.mktemp("eval_corpus")
    subprocess.run(
        [sys.executable, str(CORPUS_SCRIPT), "--kind", "mixed", "--count", "150", "--nested",
         "--out", str(root / "imgs"), "--meta-dir", str(root / "meta"), "--quiet"],
        check=True,
    )
    ground_truth = json.loads((root / "meta" / "ground_truth.json").read_text())
    return root / "imgs", ground_truth


@pytest.mark.parametrize("threshold", [0, 6, 10, 16])
def test_corpus_phash_retrievals_match_reference(corpus: tuple[Path, dict], threshold: int) -> None:
    from imagededup.methods import PHash

    image_dir, ground_truth = corpus
    retrieved = PHash(verbose=False).find_duplicates(
        image_dir=image_dir, recursive=True, max_distance_threshold=threshold
    )
    assert set(retrieved) == set(ground_truth)
    ours = evaluate(ground_truth, retrieved, metric="all")
    assert_same(ours, reference(ground_truth, retrieved, metric="all"), exact=False)
    assert ours["support"].sum() == 150 * 149 // 2
    if threshold == 0:
        assert ours["precision"][-1] > 0.9  # exact copies are found, with hardly any false match


# --- validation ------------------------------------------------------------------------------

GOOD = sym([["a", "b"]], ("c",))

BAD_INPUTS: dict[str, tuple[Any, Any, str, type[BaseException], str]] = {
    # name: (ground truth, retrieved, metric, reference's exception type, our message pattern)
    "truth_asymmetric": ({"a": ["b"], "b": [], "c": []}, GOOD, "all", AssertionError, "not symmetric"),
    "retrieved_asymmetric": (GOOD, {"a": [], "b": ["a"], "c": []}, "map", AssertionError, "not symmetric"),
    "truth_not_closed": ({"a": ["x"], "b": [], "c": []}, GOOD, "all", AssertionError, "not keys"),
    "retrieved_not_closed": (GOOD, {"a": ["z"], "b": [], "c": []}, "all", AssertionError, "not keys"),
    "retrieved_with_scores": (GOOD, {"a": [("b", 2)], "b": [("a", 2)], "c": []}, "all", AssertionError,
                              "score"),
    "different_keys": (GOOD, {"a": ["b"], "b": ["a"], "d": []}, "all", Exception, "same keys"),
    "unknown_metric": (GOOD, GOOD, "precision", ValueError, "acceptable metrics"),
    "truth_value_none": ({"a": None, "b": [], "c": []}, GOOD, "map", TypeError, "must be a list"),
    "retrieved_value_int": (GOOD, {"a": ["b"], "b": ["a"], "c": 5}, "all", TypeError, "must be a list"),
    "bad_map_before_bad_metric": ({"a": ["b"], "b": [], "c": []}, GOOD, "nope", AssertionError,
                                  "not symmetric"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_validation_errors_match_reference(case: str) -> None:
    ground_truth, retrieved, metric, ref_type, pattern = BAD_INPUTS[case]
    with pytest.raises(ref_type) as ref_info:
        reference(ground_truth, retrieved, metric)
    with pytest.raises(ref_type, match=pattern) as our_info:
        evaluate(ground_truth, retrieved, metric)
    # The same family of error: a map problem in both, or an unknown metric in both.
    assert isinstance(our_info.value, MapValidationError) == (ref_info.type is not ValueError)


def test_map_validation_error_is_value_and_assertion_error() -> None:
    with pytest.raises(MapValidationError) as info:
        evaluate({"a": ["b"], "b": []}, {"a": [], "b": []})
    assert isinstance(info.value, ValueError) and isinstance(info.value, AssertionError)
    assert "'a' lists 'b'" in str(info.value)


@pytest.mark.parametrize(
    "ground_truth, retrieved, metric",
    [(None, None, "all"), (GOOD, None, "all"), ([("a", [])], GOOD, "all"), (GOOD, GOOD, 3)],
)
def test_wrong_argument_types_raise_type_error(ground_truth: Any, retrieved: Any, metric: Any) -> None:
    with pytest.raises(TypeError):
        evaluate(ground_truth, retrieved, metric)


def test_string_value_is_rejected() -> None:
    with pytest.raises(MapValidationError, match="must be a list"):
        evaluate({"a": "b", "b": "a"}, {"a": [], "b": []})


def test_inputs_are_not_modified() -> None:
    ground_truth = {"a": ["b"], "b": ["a"], "c": []}
    retrieved = {"a": ["b"], "b": ["a"], "c": []}
    before = json.dumps([ground_truth, retrieved])
    evaluate(ground_truth, retrieved)
    assert json.dumps([ground_truth, retrieved]) == before
