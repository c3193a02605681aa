"""The conformance cases: every public call of the imagededup API, generated parameter by parameter.

Each :class:`Api` names one public function or method, a *base* call that is valid, and for each
documented parameter its variants: valid values, boundaries, wrong types and the parameter left
out (:data:`MISSING`). :func:`generate` yields the base call, then the base call with one parameter
replaced by each of its variants. Values are either constants or :class:`Fx` factories resolved
per side (so each side writes its ``outfile`` into its own directory).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from tests.conformance.outcome import Outcome, capture

MISSING = object()


@dataclass(frozen=True)
class Fx:
    """A value computed for one side: ``make(ctx)``."""

    make: Callable[[Ctx], Any]
    label: str = ""


@dataclass
class Ctx:
    """What a call sees on one side: the library's modules, the shared inputs, a private output dir."""

    side: str
    lib: SimpleNamespace
    data: SimpleNamespace
    out: Path


@dataclass
class Api:
    """One public callable and how to vary its parameters."""

    name: str
    call: Callable[[Ctx, dict[str, Any]], Any]
    base: dict[str, Any]
    variants: dict[str, list[tuple[str, Any]]] = field(default_factory=dict)
    #: parameters whose value is an output file to compare after the call
    outputs: tuple[str, ...] = ()
    #: maps a returned value to what is compared (e.g. ignore the order of a set-like list)
    normalize: Callable[[Any], Any] | None = None
    tags: tuple[str, ...] = ()


@dataclass
class Case:
    api: Api
    label: str
    kwargs: dict[str, Any]

    @property
    def id(self) -> str:
        return f"{self.api.name}[{self.label}]"

    def run(self, ctx: Ctx) -> Outcome:
        kwargs = {k: (v.make(ctx) if isinstance(v, Fx) else v) for k, v in self.kwargs.items() if v is not MISSING}
        outcome = capture(lambda: self.api.call(ctx, kwargs))
        if self.api.normalize is not None and outcome.exc is None:
            outcome.value = self.api.normalize(outcome.value)
        files = {}
        for name in self.api.outputs:
            path = kwargs.get(name)
            if isinstance(path, str | Path) and Path(path).is_file() and str(path).endswith(".json"):
                files[name] = _normalize_json(json.loads(Path(path).read_text()), self.api.normalize)
            elif isinstance(path, str | Path):
                files[name] = Path(path).is_file()
        if files:
            outcome.value = (outcome.value, files)
        return outcome


def _normalize_json(value: Any, normalize: Callable[[Any], Any] | None) -> Any:
    return normalize(value) if normalize is not None and isinstance(value, list) else value


def generate(api: Api) -> Iterator[Case]:
    """The base call, then each parameter replaced by each of its variants."""
    yield Case(api, "base", dict(api.base))
    for param, variants in api.variants.items():
        for label, value in variants:
            kwargs = dict(api.base)
            kwargs[param] = value
            yield Case(api, f"{param}={label}", kwargs)


# -- parameter variants, by kind ----------------------------------------------------------------------

def out_file(name: str) -> Fx:
    return Fx(lambda c: str(c.out / name), name)


def data(attr: str, wrap: Callable[[Any], Any] = lambda x: x) -> Fx:
    return Fx(lambda c: wrap(getattr(c.data, attr)), attr)


DIR_VARIANTS = [
    ("path-object", data("images", Path)),
    ("empty-dir", data("empty", str)),
    ("one-image", data("single", str)),
    ("nonexistent", data("nowhere", str)),
    ("a-file", data("a_file", str)),
    ("wrong-type-int", 123),
    ("wrong-type-list", ["a.jpg"]),
    ("none", None),
    ("missing", MISSING),
]
BOOL_VARIANTS = [("true", True), ("false", False), ("wrong-type-str", "yes"), ("none", None), ("int-1", 1)]
INT_THRESHOLD_VARIANTS = [
    ("0", 0), ("64", 64), ("-1", -1), ("65", 65), ("float", 10.0), ("str", "10"), ("none", None),
    ("bool", True), ("numpy-int", np.int64(10)), ("missing", MISSING),
]
FLOAT_THRESHOLD_VARIANTS = [
    ("-1.0", -1.0), ("1.0", 1.0), ("0.0", 0.0), ("below", -1.01), ("above", 1.01), ("int", 1), ("str", "0.9"),
    ("none", None), ("numpy-float32", np.float32(0.9)), ("numpy-float64", np.float64(0.9)), ("missing", MISSING),
]
WORKER_VARIANTS = [("0", 0), ("1", 1), ("2", 2), ("-1", -1), ("str", "2"), ("float", 2.5), ("missing", MISSING)]
OUTFILE_VARIANTS = [
    ("json", out_file("out.json")), ("path-object", Fx(lambda c: c.out / "p.json", "p.json")),
    ("a-directory", Fx(lambda c: str(c.out), "dir")), ("empty-str", ""), ("missing", MISSING),
]
#: ``verbose`` of the constructor (the cases run with True unless this varies it)
VERBOSE_VARIANTS = [("false", False), ("int-0", 0)]
SEARCH_VARIANTS = [
    ("brute_force", "brute_force"), ("bktree", "bktree"), ("brute_force_cython", "brute_force_cython"),
    ("unknown", "no_such_method"), ("missing", MISSING),
]


def _sorted_list(value: Any) -> Any:
    """``find_duplicates_to_remove`` returns a set's elements: compared without order."""
    return sorted(value) if isinstance(value, list) else value


# -- the APIs -----------------------------------------------------------------------------------------

HASH_METHODS = ("PHash", "AHash", "DHash", "WHash")


def _hasher(c: Ctx, method: str, kw: dict[str, Any]) -> Any:
    """The method's object; a ``verbose`` entry of ``kw`` goes to the constructor (True if absent)."""
    return getattr(c.lib.methods, method)(verbose=kw.pop("verbose", True))


def hash_apis(method: str) -> list[Api]:
    h = method
    encodings = data(f"enc_{h}")
    file_variants = [
        ("path-object", data("image_file", Path)), ("nonexistent", data("nowhere", str)),
        ("corrupt", data("corrupt", str)), ("text-file", data("text_file", str)), ("a-directory", data("images", str)),
        ("empty-str", ""), ("wrong-type-int", 123), ("none", None), ("missing", MISSING),
    ]
    array_variants = [
        ("gray-2d", data("gray")), ("float-array", data("rgb_float")), ("rgba-4ch", data("rgba")),
        ("2ch", data("two_channel")), ("1d", np.zeros(16, np.uint8)), ("4d", np.zeros((4, 4, 3, 1), np.uint8)),
        ("list", [[0, 1], [1, 0]]), ("tiny-1x1", np.full((1, 1, 3), 128, np.uint8)),
    ]
    enc_variants = [
        ("empty", {}), ("one", Fx(lambda c: dict(list(getattr(c.data, f"enc_{h}").items())[:1]))),
        ("short-hash", {"a": "ff", "b": "fe"}), ("bad-hex", {"a": "zz", "b": "00"}),
        ("wrong-type-list", [("a", "ff")]), ("none", None), ("missing", MISSING),
    ]
    return [
        Api(f"{h}()", lambda c, kw: vars(getattr(c.lib.methods, h)(**kw)).get("verbose"),
            {"verbose": True}, {"verbose": BOOL_VARIANTS[1:] + [("missing", MISSING)]}),
        Api(f"{h}.hamming_distance", lambda c, kw: getattr(c.lib.methods, h).hamming_distance(**kw),
            {"hash1": "f" * 16, "hash2": "0" * 16},
            {"hash1": [("equal", "0" * 16), ("short", "ff"), ("bad-hex", "zz"), ("int", 5), ("missing", MISSING)]}),
        Api(f"{h}.encode_image", lambda c, kw: _hasher(c, h, kw).encode_image(**kw),
            {"image_file": data("image_file", str)},
            {"image_file": file_variants,
             "image_array": [(f"with-file-{n}", v) for n, v in [("rgb", data("rgb"))]]}),
        Api(f"{h}.encode_image(array)", lambda c, kw: _hasher(c, h, kw).encode_image(**kw),
            {"image_array": data("rgb")}, {"image_array": array_variants}),
        Api(f"{h}.encode_images", lambda c, kw: _hasher(c, h, kw).encode_images(**kw),
            {"image_dir": data("images", str), "num_enc_workers": 0},
            {"image_dir": DIR_VARIANTS, "recursive": BOOL_VARIANTS, "num_enc_workers": WORKER_VARIANTS,
             "verbose": VERBOSE_VARIANTS}),
        Api(f"{h}.find_duplicates", lambda c, kw: _hasher(c, h, kw).find_duplicates(**kw),
            {"encoding_map": encodings, "num_dist_workers": 0},
            {"encoding_map": enc_variants, "max_distance_threshold": INT_THRESHOLD_VARIANTS,
             "scores": BOOL_VARIANTS, "outfile": OUTFILE_VARIANTS, "search_method": SEARCH_VARIANTS,
             "recursive": BOOL_VARIANTS[:2], "num_enc_workers": [("0", 0), ("2", 2)],
             "num_dist_workers": WORKER_VARIANTS, "verbose": VERBOSE_VARIANTS},
            outputs=("outfile",)),
        Api(f"{h}.find_duplicates(dir)", lambda c, kw: _hasher(c, h, kw).find_duplicates(**kw),
            {"image_dir": data("images", str), "num_enc_workers": 0, "num_dist_workers": 0, "scores": True},
            {"image_dir": DIR_VARIANTS, "recursive": BOOL_VARIANTS[:2], "outfile": OUTFILE_VARIANTS[:1],
             "encoding_map": [("also-given", encodings)], "verbose": VERBOSE_VARIANTS[:1],
             "num_enc_workers": WORKER_VARIANTS[2:3], "num_dist_workers": WORKER_VARIANTS[4:5]},
            outputs=("outfile",)),
        Api(f"{h}.find_duplicates_to_remove", lambda c, kw: _hasher(c, h, kw).find_duplicates_to_remove(**kw),
            {"encoding_map": encodings, "num_dist_workers": 0},
            {"encoding_map": enc_variants, "max_distance_threshold": INT_THRESHOLD_VARIANTS[:6],
             "outfile": OUTFILE_VARIANTS, "image_dir": [("dir", data("images", str))],
             "recursive": BOOL_VARIANTS[:1], "num_dist_workers": WORKER_VARIANTS[:1]},
            outputs=("outfile",), normalize=_sorted_list),
    ]


def _ground_truth(c: Ctx) -> dict:
    return c.data.ground_truth


EVAL_MAP_VARIANTS = [
    ("empty", {}), ("one-key", {"a.jpg": []}), ("two-keys-dup", {"a.jpg": ["b.jpg"], "b.jpg": ["a.jpg"]}),
    ("with-scores", data("retrieved_scores")), ("asymmetric", data("asymmetric")), ("stranger", data("stranger")),
    ("other-keys", data("other_keys")), ("wrong-type-list", [("a.jpg", [])]), ("none", None), ("missing", MISSING),
]


def evaluate_apis() -> list[Api]:
    return [
        Api("evaluate", lambda c, kw: c.lib.evaluation.evaluate(**kw),
            {"ground_truth_map": data("ground_truth"), "retrieved_map": data("retrieved")},
            {"ground_truth_map": EVAL_MAP_VARIANTS, "retrieved_map": EVAL_MAP_VARIANTS,
             "metric": [("map", "map"), ("ndcg", "ndcg"), ("jaccard", "jaccard"), ("classification", "classification"),
                        ("all", "all"), ("upper", "MAP"), ("unknown", "recall"), ("int", 1), ("none", None),
                        ("missing", MISSING)]}),
        Api("evaluate(perfect)", lambda c, kw: c.lib.evaluation.evaluate(**kw),
            {"ground_truth_map": data("ground_truth"), "retrieved_map": data("ground_truth")},
            {"metric": [("classification", "classification"), ("map", "map")]}),
        Api("evaluate(all-wrong)", lambda c, kw: c.lib.evaluation.evaluate(**kw),
            {"ground_truth_map": data("ground_truth"), "retrieved_map": data("inverse")},
            {"metric": [("classification", "classification"), ("ndcg", "ndcg")]}),
        Api("evaluate(no-duplicates)", lambda c, kw: c.lib.evaluation.evaluate(**kw),
            {"ground_truth_map": data("no_dups"), "retrieved_map": data("no_dups")},
            {"metric": [("classification", "classification"), ("jaccard", "jaccard")]}),
    ]


def plot_apis() -> list[Api]:
    return [
        Api("plot_duplicates", lambda c, kw: c.lib.utils.plot_duplicates(**kw),
            {"image_dir": data("images", str), "duplicate_map": data("plot_map"), "filename": data("plot_key"),
             "outfile": out_file("plot.png")},
            {"image_dir": [("path-object", data("images", Path)), ("nonexistent", data("nowhere", str)),
                           ("none", None), ("missing", MISSING)],
             "duplicate_map": [("with-scores", data("plot_map_scores")), ("wrong-type-list", [1]), ("none", None),
                               ("missing", MISSING)],
             "filename": [("not-a-key", "nope.jpg"), ("no-duplicates", data("plot_lonely")), ("none", None),
                          ("missing", MISSING)],
             "outfile": [("none", None), ("missing", MISSING)]},
            outputs=("outfile",), tags=("plot",)),
    ]


def _cnn(c: Ctx, verbose: bool = True) -> Any:
    return c.lib.methods.CNN(verbose=verbose, model_config=c.lib.model_config)


def cnn_apis() -> list[Api]:
    encodings = data("enc_cnn")
    enc_variants = [
        ("empty", {}), ("zero-vector", data("enc_cnn_zero")), ("near-zero-vector", data("enc_cnn_tiny")),
        ("float64", data("enc_cnn_f64")), ("one", Fx(lambda c: dict(list(c.data.enc_cnn.items())[:1]))),
        ("lists", data("enc_cnn_lists")), ("wrong-type-list", [("a", np.ones(3))]), ("none", None), ("missing", MISSING),
    ]
    def lite(c: Ctx) -> Any:
        return c.lib.methods.CNN(verbose=True, model_config=c.lib.lite_config)

    return [
        Api("CNN.find_duplicates(lite0)", lambda c, kw: lite(c).find_duplicates(**kw),
            {"image_dir": data("images", str), "scores": True, "min_similarity_threshold": 0.5}, tags=("cnn",)),
        Api("CNN(default model).encode_image", lambda c, kw: c.lib.methods.CNN(**kw).encode_image(
            image_file=c.data.image_file), {"verbose": True}, {"verbose": [("false", False), ("missing", MISSING)]},
            tags=("default-model",)),
        Api("CNN(default model).find_duplicates", lambda c, kw: c.lib.methods.CNN().find_duplicates(**kw),
            {"image_dir": data("images", str), "scores": True, "min_similarity_threshold": 0.8},
            tags=("default-model",)),
        Api("CNN()", lambda c, kw: type(c.lib.methods.CNN(**kw)).__name__,
            {"verbose": True, "model_config": Fx(lambda c: c.lib.model_config)},
            {"verbose": [("false", False), ("missing", MISSING)],
             "model_config": [("empty-config", Fx(lambda c: c.lib.CustomModel())),
                              ("unnamed", Fx(lambda c: c.lib.CustomModel(model=c.lib.model_config.model,
                                                                         transform=c.lib.model_config.transform))),
                              ("no-transform", Fx(lambda c: c.lib.CustomModel(name="x", model=c.lib.model_config.model))),
                              ("wrong-type-int", 123)]},
            tags=("cnn",)),
        Api("CNN.encode_image", lambda c, kw: _cnn(c).encode_image(**kw),
            {"image_file": data("image_file", str)},
            {"image_file": [("path-object", data("image_file", Path)), ("nonexistent", data("nowhere", str)),
                            ("corrupt", data("corrupt", str)), ("a-directory", data("images", str)),
                            ("wrong-type-int", 123), ("missing", MISSING)],
             "image_array": [("gray-2d", data("gray")), ("rgba-4ch", data("rgba")), ("1d", np.zeros(16, np.uint8))]},
            tags=("cnn",)),
        Api("CNN.encode_images", lambda c, kw: _cnn(c).encode_images(**kw),
            {"image_dir": data("images", str)},
            {"image_dir": [("path-object", data("images", Path)), ("empty-dir", data("empty", str)),
                           ("one-image", data("single", str)), ("nonexistent", data("nowhere", str)),
                           ("wrong-type-int", 123), ("missing", MISSING)],
             "recursive": [("true", True)], "num_enc_workers": [("-1", -1), ("str", "2")]},
            tags=("cnn",)),
        Api("CNN.find_duplicates", lambda c, kw: _cnn(c).find_duplicates(**kw),
            {"encoding_map": encodings, "num_sim_workers": 0},
            {"encoding_map": enc_variants, "min_similarity_threshold": FLOAT_THRESHOLD_VARIANTS,
             "scores": BOOL_VARIANTS, "outfile": OUTFILE_VARIANTS[:3], "recursive": BOOL_VARIANTS[:1],
             "num_enc_workers": [("0", 0), ("2", 2)], "num_sim_workers": [("2", 2), ("missing", MISSING)],
             "image_dir": [("dir", data("images", str))]},
            outputs=("outfile",), tags=("cnn",)),
        Api("CNN.find_duplicates(scores)", lambda c, kw: _cnn(c).find_duplicates(**kw),
            {"encoding_map": encodings, "scores": True, "min_similarity_threshold": 0.5},
            {"outfile": OUTFILE_VARIANTS[:1], "image_dir": [("dir", data("images", str))]},
            outputs=("outfile",), tags=("cnn",)),
        Api("CNN.find_duplicates_to_remove", lambda c, kw: _cnn(c).find_duplicates_to_remove(**kw),
            {"encoding_map": encodings, "min_similarity_threshold": 0.5},
            {"encoding_map": enc_variants[:1] + enc_variants[-2:], "min_similarity_threshold": FLOAT_THRESHOLD_VARIANTS[:6],
             "outfile": OUTFILE_VARIANTS[:1], "image_dir": [("dir", data("images", str))]},
            outputs=("outfile",), normalize=_sorted_list, tags=("cnn",)),
    ]


def model_apis() -> list[Api]:
    """Import paths and class attributes of ``utils.CustomModel`` and ``utils.models``."""
    def attr(path: str) -> Callable[[Ctx, dict[str, Any]], Any]:
        def get(c: Ctx, kw: dict[str, Any]) -> Any:
            obj: Any = c.lib
            for part in path.split("."):
                obj = getattr(obj, part)
            return obj
        return get

    def custom(c: Ctx, kw: dict[str, Any]) -> Any:
        m = c.lib.utils.CustomModel(**kw)
        return (m.name, m.model, m.transform, isinstance(m, tuple))

    apis = [Api("utils.CustomModel", custom, {}, {"name": [("str", "mine")], "model": [("callable", len)],
                                                   "transform": [("callable", len)]}, tags=("torch",))]
    for path in ("utils.models.DEFAULT_MODEL_NAME", "utils.models.MobilenetV3.name", "utils.models.ViT.name",
                 "utils.models.EfficientNet.name"):
        apis.append(Api(path, attr(path), {}, tags=("torch",)))
    for cls in ("MobilenetV3", "ViT", "EfficientNet"):
        apis.append(Api(f"utils.models.{cls}.transform",
                        lambda c, kw, cls=cls: repr(getattr(c.lib.utils.models, cls).transform), {}, tags=("torch",)))
    return apis


def all_apis(cnn: bool = True) -> list[Api]:
    apis = [a for m in HASH_METHODS for a in hash_apis(m)] + evaluate_apis() + plot_apis() + model_apis()
    return apis + cnn_apis() if cnn else apis
