"""Conformance: imagededup's public API and dedupd's, side by side on the same calls.

Every case of :mod:`tests.conformance.cases` runs on the reference package and on dedupd; the two
outcomes (exception class, return type and value, warning categories, progress written to a
non-terminal stderr, ``outfile`` contents) must agree under the contract of
:mod:`tests.conformance.outcome`. A case that differs must be listed in :data:`KNOWN`, each with
the section of ``docs/compatibility.md`` that explains it; a listed case that no longer differs
fails too, so the list and the page stay true. Counts are printed at the end of the session.
"""

from __future__ import annotations

import fnmatch
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from tests.conformance import cases as C
from tests.conformance.outcome import TALLY, differences

pytest.importorskip("imagededup", reason="the test extra installs imagededup (the reference)")

DOC = Path(__file__).resolve().parents[2] / "docs" / "compatibility.md"

#: Cases that differ on purpose: (case id pattern, pattern every difference line must match, anchor of
#: the explanation in docs/compatibility.md). A difference of another kind in such a case still fails.
KNOWN: list[tuple[str, str, str]] = [
    ("CNN.encode_images[[]image_dir=empty-dir]", "reference raised RuntimeError", "cnn-empty-folder"),
    ("CNN.find_duplicates_to_remove[[]encoding_map=*]", "is not a UnboundLocalError", "cnn-remove-without-input"),
]
#: Differences that hang on the last bit of the reference's float32 BLAS product, which depends on
#: the machine: documented like :data:`KNOWN`, but a machine where the case conforms is no news.
ROUNDING: list[tuple[str, str, str]] = [
    ("CNN.find_duplicates*[[]min_similarity_threshold=1.0]", "length 0 vs 1", "cnn-identical-encodings"),
]

#: The hash method whose cases run in the default run; the others run with ``-m stress``.
QUICK_HASH = "PHash"



# -- inputs shared by both sides -------------------------------------------------------------------

def _photo(corpus: Path, k: int, size: int = 192) -> Image.Image:
    img = Image.open(corpus / "base" / f"b{k:04d}.jpg").convert("RGB")
    img.thumbnail((size, size))
    return img


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, corpus_dir: Path) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("conformance")
    images, empty, single = root / "images", root / "empty", root / "single"
    for d in (images, images / "sub", empty, single):
        d.mkdir(parents=True)
    a = _photo(corpus_dir, 0)
    a.save(images / "a.jpg", quality=90)
    shutil.copy(images / "a.jpg", images / "a_copy.jpg")
    a.resize((a.width // 2, a.height // 2)).save(images / "a_small.png")
    _photo(corpus_dir, 1).save(images / "b.jpg", quality=90)
    _photo(corpus_dir, 2).convert("L").save(images / "c.png")
    _photo(corpus_dir, 3).save(images / "sub" / "d.jpg", quality=90)
    a.rotate(2).save(images / "sub" / "a_rot.jpg", quality=85)
    (images / "corrupt.jpg").write_bytes((images / "a.jpg").read_bytes()[:300])
    (images / "notes.txt").write_text("not an image\n")
    shutil.copy(images / "b.jpg", images / ".hidden.jpg")
    shutil.copy(images / "b.jpg", single / "only.jpg")

    rgb = np.asarray(a)
    names = ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg", "f.jpg"]
    ground_truth = {"a.jpg": ["b.jpg", "c.jpg"], "b.jpg": ["a.jpg", "c.jpg"], "c.jpg": ["a.jpg", "b.jpg"],
                    "d.jpg": ["e.jpg"], "e.jpg": ["d.jpg"], "f.jpg": []}
    retrieved = {"a.jpg": ["b.jpg"], "b.jpg": ["a.jpg"], "c.jpg": [], "d.jpg": ["e.jpg", "f.jpg"],
                 "e.jpg": ["d.jpg"], "f.jpg": ["d.jpg"]}
    inverse = {k: [n for n in names if n != k and n not in v] for k, v in ground_truth.items()}
    ns = SimpleNamespace(
        root=root, images=images, empty=empty, single=single, nowhere=root / "no" / "such", a_file=images / "a.jpg",
        image_file=images / "a.jpg", corrupt=images / "corrupt.jpg", text_file=images / "notes.txt",
        rgb=rgb, gray=np.asarray(a.convert("L")), rgb_float=rgb.astype(np.float64),
        rgba=np.asarray(a.convert("RGBA")), two_channel=rgb[:, :, :2].copy(),
        ground_truth=ground_truth, retrieved=retrieved, inverse=inverse,
        no_dups={n: [] for n in names},
        retrieved_scores={k: [(n, 3) for n in v] for k, v in retrieved.items()},
        asymmetric={**retrieved, "f.jpg": []},
        stranger={**retrieved, "c.jpg": ["zzz.jpg"]},
        other_keys={**{k: v for k, v in retrieved.items() if k != "f.jpg"}, "g.jpg": [], "d.jpg": ["e.jpg"]},
        plot_map={"a.jpg": ["a_copy.jpg", "b.jpg"], "a_copy.jpg": ["a.jpg"], "b.jpg": ["a.jpg"], "c.png": []},
        plot_map_scores={"a.jpg": [("a_copy.jpg", np.float32(0.9876)), ("b.jpg", 7)]},
        plot_key="a.jpg", plot_lonely="c.png",
    )
    import imagededup.methods as ref_methods

    for h in C.HASH_METHODS:
        setattr(ns, f"enc_{h}", getattr(ref_methods, h)(verbose=False).encode_images(images, recursive=True,
                                                                                     num_enc_workers=1))
    return ns


def _libs(cnn: bool) -> tuple[SimpleNamespace, SimpleNamespace]:
    import imagededup.evaluation
    import imagededup.methods
    import imagededup.utils

    import dedupd.evaluation
    import dedupd.methods
    import dedupd.utils

    ref = SimpleNamespace(methods=imagededup.methods, evaluation=imagededup.evaluation, utils=imagededup.utils)
    ours = SimpleNamespace(methods=dedupd.methods, evaluation=dedupd.evaluation, utils=dedupd.utils)
    if cnn:
        import imagededup.utils.models  # noqa: F401 - the documented import path
        ref.CustomModel = imagededup.utils.CustomModel
        ours.CustomModel = dedupd.utils.CustomModel
    return ref, ours


@pytest.fixture(scope="module")
def cnn_inputs(inputs) -> tuple[SimpleNamespace, SimpleNamespace]:
    """Both sides with the offline EfficientNet-Lite0 backbone (the same weights), and reference encodings."""
    pytest.importorskip("torch", reason="the cnn extra installs torch")
    import torch
    from torchvision import transforms

    from dedupd.cnn_models import load_model

    ref, ours = _libs(cnn=True)
    lite = load_model("efficientnet_lite0")
    torch.manual_seed(13)
    # most cases use a tiny network (fast on a loaded machine); the "lite0" cases the real backbone
    tiny = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 5, stride=4), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                               torch.nn.Flatten()).eval()
    tiny_transform = transforms.Compose([transforms.Resize((48, 48)), transforms.ToTensor()])
    for lib in (ref, ours):
        lib.model_config = lib.CustomModel(name="tiny", model=tiny, transform=tiny_transform)
        lib.lite_config = lib.CustomModel(name=lite.name, model=lite.model, transform=lite.transform)
    enc = ref.methods.CNN(verbose=False, model_config=ref.model_config).encode_images(inputs.images)
    inputs.enc_cnn = enc
    zero = dict(enc)
    zero[next(iter(zero))] = np.zeros_like(next(iter(zero.values())))
    inputs.enc_cnn_zero = zero
    tiny = dict(enc)
    first = next(iter(tiny))
    tiny[first] = (tiny[first] * 1e-12).astype(tiny[first].dtype)
    inputs.enc_cnn_tiny = tiny
    inputs.enc_cnn_f64 = {k: v.astype(np.float64) for k, v in enc.items()}
    inputs.enc_cnn_lists = {k: v.tolist() for k, v in enc.items()}
    return ref, ours


@pytest.fixture(scope="module")
def default_model_libs(cnn_inputs, tmp_path_factory):
    """Both sides with their default model (MobileNetV3-small): random weights placed in torchvision's
    cache, which both load (the real file needs a download)."""
    import torch
    from torchvision.models import mobilenet_v3_small

    from dedupd.cnn_models import mobilenet

    home = tmp_path_factory.mktemp("torch-home")
    (home / "hub" / "checkpoints").mkdir(parents=True)
    torch.manual_seed(7)
    torch.save(mobilenet_v3_small(weights=None).state_dict(), home / "hub" / "checkpoints" / mobilenet.WEIGHTS_FILENAME)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TORCH_HOME", str(home))
        mp.delenv(mobilenet.ENV_WEIGHTS, raising=False)
        yield cnn_inputs


# -- running the cases -----------------------------------------------------------------------------

def _known(case_id: str, diff: list[str]) -> str | None:
    """The anchor documenting this case's differences (all of them), if any."""
    for pattern, kind, anchor in KNOWN + ROUNDING:
        if fnmatch.fnmatchcase(case_id, pattern) and (not diff or all(re.search(kind, d) for d in diff)):
            return anchor
    return None


def run_api(api: C.Api, ref_lib: SimpleNamespace, our_lib: SimpleNamespace, inputs, tmp_path: Path) -> None:
    unexpected, stale = [], []
    for n, case in enumerate(C.generate(api)):
        outs = []
        for side, lib in (("reference", ref_lib), ("dedupd", our_lib)):
            out = tmp_path / f"{n}-{side}"
            out.mkdir()
            outs.append(case.run(C.Ctx(side, lib, inputs, out)))
        diff = differences(*outs)
        known = _known(case.id, diff)
        TALLY["cases"] += 1
        if diff:
            TALLY["differ"] += 1
            TALLY["documented"] += bool(known)
            if not known:
                unexpected.append(f"{case.id}: " + "; ".join(diff) + f"\n    reference {outs[0].describe()}"
                                  f"\n    dedupd    {outs[1].describe()}")
        elif known and known not in {anchor for _, _, anchor in ROUNDING}:
            stale.append(f"{case.id} is listed as a difference ({known}) but conforms now")
    assert not unexpected, f"{len(unexpected)} undocumented differences:\n" + "\n".join(unexpected)
    assert not stale, "\n".join(stale)


def _params(apis: list[C.Api], quick: bool) -> list:
    out = []
    for api in apis:
        slow = any(api.name.startswith(h) for h in C.HASH_METHODS if h != QUICK_HASH)
        marks = [pytest.mark.stress] if slow and quick is False else []
        out.append(pytest.param(api, id=api.name, marks=marks))
    return out


NON_CNN = [a for a in C.all_apis(cnn=False) if "torch" not in a.tags]


@pytest.mark.parametrize("api", _params(NON_CNN, quick=False))
def test_api_conforms(api: C.Api, inputs, tmp_path: Path) -> None:
    if "plot" in api.tags:
        import matplotlib

        matplotlib.use("Agg")
    run_api(api, *_libs(cnn=False), inputs, tmp_path)


@pytest.mark.cnn
@pytest.mark.parametrize("api", [a for a in C.all_apis() if {"cnn", "torch"} & set(a.tags)], ids=lambda a: a.name)
def test_cnn_api_conforms(api: C.Api, cnn_inputs, inputs, tmp_path: Path) -> None:
    run_api(api, *cnn_inputs, inputs, tmp_path)


def test_documented_differences_are_in_the_compatibility_page() -> None:
    text = DOC.read_text()
    missing = sorted({anchor for _, _, anchor in KNOWN + ROUNDING if f'<a id="{anchor}">' not in text})
    assert not missing, f"docs/compatibility.md does not explain: {missing}"


@pytest.mark.cnn
@pytest.mark.parametrize("api", [a for a in C.all_apis() if "default-model" in a.tags], ids=lambda a: a.name)
def test_cnn_default_model_conforms(api: C.Api, default_model_libs, inputs, tmp_path: Path) -> None:
    run_api(api, *default_model_libs, inputs, tmp_path)
