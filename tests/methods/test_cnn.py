"""The CNN method: real-weight quality checks and differential tests against imagededup's CNN."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the cnn extra installs torch")
pytest.importorskip("torchvision", reason="the cnn extra installs torchvision")

from dedupd.cnn_models import (  # noqa: E402
    CustomModel,
    load_model,
    mobilenet,  # noqa: E402
)
from dedupd.errors import ModelUnavailableError  # noqa: E402
from dedupd.imaging import decode_file  # noqa: E402
from dedupd.methods import CNN  # noqa: E402

pytestmark = pytest.mark.cnn

@pytest.fixture(scope="module")
def lite() -> CustomModel:
    return load_model("efficientnet_lite0")


@pytest.fixture(scope="module")
def cnn(lite) -> CNN:
    return CNN(verbose=False, model_config=lite)


@pytest.fixture(scope="module")
def transformed(dataset) -> Path:
    """3 bases x 17 variants (51 files), with ``meta/ground_truth.json``."""
    return dataset("transformed", "--num-bases", "3")


@pytest.fixture(scope="module")
def ours(cnn, transformed) -> dict[str, np.ndarray]:
    return cnn.encode_images(transformed / "images")


@pytest.fixture(scope="module")
def reference(lite, transformed):
    """imagededup's CNN with the same backbone: (its CNN, its encodings, its duplicate map with scores)."""
    ref_methods = pytest.importorskip("imagededup.methods", reason="the test extra installs imagededup")
    from imagededup.utils.models import CustomModel as RefCustomModel

    ref = ref_methods.CNN(verbose=False, model_config=RefCustomModel(lite.name, lite.model, lite.transform))
    dups = ref.find_duplicates(image_dir=transformed / "images", scores=True, num_sim_workers=0)
    return ref, dict(ref.encoding_map), dups


def plain(result: dict) -> dict[str, list]:
    """Names only, as plain str (the reference returns numpy strings and optional score tuples)."""
    return {str(k): [str(d[0] if isinstance(d, tuple | list) else d) for d in v] for k, v in result.items()}


def assert_same_scored(got: dict, want: dict) -> None:
    assert plain(got) == plain(want)
    for k, lst in want.items():
        np.testing.assert_allclose([s for _, s in got[k]], [float(s) for _, s in lst], atol=2e-6)
        assert all(type(s) is type(w) for (_, s), (_, w) in zip(got[k], lst))  # numpy.float32, as the reference


# -- real weights -------------------------------------------------------------------------------


@pytest.mark.parametrize("base,label", [("b0001.jpg", 348), ("b0050.jpg", 21)], ids=["sheep-ram", "harrier-kite"])
def test_efficientnet_lite0_classifies_imagenet(lite, corpus_dir, base, label):
    x = lite.transform(decode_file(corpus_dir / "base" / base).rgb)[None]
    with torch.inference_mode():
        logits = lite.model.classify(x)
    assert int(logits.argmax()) == label
    assert float(logits.softmax(1)[0, label]) > 0.4


def test_near_duplicates_more_similar_than_unrelated(cnn, ours, transformed):
    truth = json.loads((transformed / "meta" / "ground_truth.json").read_text())
    names = list(ours)
    x = np.stack([ours[n] for n in names])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    sims = x @ x.T
    pos = {n: k for k, n in enumerate(names)}
    same = np.zeros_like(sims, dtype=bool)
    for name, dups in truth.items():
        same[pos[name], [pos[d] for d in dups]] = True
    other = ~same
    np.fill_diagonal(other, False)
    assert sims[same].mean() > sims[other].mean() + 0.25
    found = cnn.find_duplicates(encoding_map=ours, min_similarity_threshold=0.9)
    pairs = [(a, b) for a, lst in found.items() for b in lst]
    assert len(pairs) > 100
    assert all(b in truth[a] for a, b in pairs), "a pair above 0.9 that is not a true duplicate"


# -- differential against imagededup ------------------------------------------------------------


def test_encodings_match_reference(ours, reference):
    _, ref_enc, _ = reference
    assert list(ours) == [str(k) for k in ref_enc]  # same files, same (sorted) order
    assert len(ours) == 51
    for name, vec in ref_enc.items():
        assert ours[name].shape == vec.shape == (1280,)
        assert ours[name].dtype == np.float32
        np.testing.assert_allclose(ours[name], vec, rtol=1e-5, atol=1e-5)


def test_find_duplicates_from_directory_matches_reference(cnn, transformed, reference):
    _, _, ref_dups = reference
    assert_same_scored(cnn.find_duplicates(image_dir=transformed / "images", scores=True), ref_dups)


@pytest.mark.parametrize("threshold", [0.9, 0.75, 0.5])
def test_find_duplicates_match_reference(cnn, reference, threshold, tmp_path):
    ref, enc, _ = reference
    want = ref.find_duplicates(encoding_map=enc, min_similarity_threshold=threshold, num_sim_workers=0)
    got = cnn.find_duplicates(encoding_map=enc, min_similarity_threshold=threshold)
    assert got == plain(want)
    assert any(got.values())
    want_s = ref.find_duplicates(
        encoding_map=enc, min_similarity_threshold=threshold, scores=True, outfile=str(tmp_path / "ref.json"),
        num_sim_workers=0,
    )
    got_s = cnn.find_duplicates(
        encoding_map=enc, min_similarity_threshold=threshold, scores=True, outfile=tmp_path / "ours.json"
    )
    assert_same_scored(got_s, want_s)
    ref_json = json.loads((tmp_path / "ref.json").read_text())
    our_json = json.loads((tmp_path / "ours.json").read_text())
    assert list(our_json) == list(ref_json)  # sorted keys
    assert_same_scored({k: [tuple(p) for p in v] for k, v in our_json.items()},
                       {k: [tuple(p) for p in v] for k, v in ref_json.items()})
    rm_want = ref.find_duplicates_to_remove(encoding_map=enc, min_similarity_threshold=threshold, num_sim_workers=0)
    rm_got = cnn.find_duplicates_to_remove(encoding_map=enc, min_similarity_threshold=threshold,
                                           outfile=tmp_path / "rm.json")
    assert set(rm_got) == set(map(str, rm_want))
    assert json.loads((tmp_path / "rm.json").read_text()) == rm_got


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "int64", "uint8", "bool"])
def test_score_types_follow_the_encodings_dtype_as_in_the_reference(cnn, dtype):
    """float32 encodings give float32 similarities; any other dtype float64 (the reference's rule)."""
    ref = pytest.importorskip("imagededup.methods").CNN(verbose=False, model_config=cnn.model_config)
    rng = np.random.default_rng(3)
    enc = {f"{k}.jpg": (rng.random(16) > 0.4).astype(dtype) if dtype == "bool" else
           (rng.random(16) * 9).astype(dtype) for k in range(6)}
    enc["copy.jpg"] = enc["0.jpg"].copy()
    want = ref.find_duplicates(encoding_map=enc, min_similarity_threshold=0.3, scores=True, num_sim_workers=0)
    got = cnn.find_duplicates(encoding_map=enc, min_similarity_threshold=0.3, scores=True)
    assert [[(n, type(v)) for n, v in lst] for lst in got.values()] == \
        [[(n, type(v)) for n, v in lst] for lst in want.values()]
    for k in want:
        np.testing.assert_allclose([v for _, v in got[k]], [v for _, v in want[k]], rtol=1e-6)


def test_encode_image_matches_reference(cnn, ours, reference, transformed):
    ref, _, _ = reference
    name = sorted(ours)[0]
    path = transformed / "images" / name
    got = cnn.encode_image(image_file=str(path))
    assert got.shape == (1, 1280) and got.dtype == np.float32
    np.testing.assert_allclose(got, ref.encode_image(image_file=path), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got[0], ours[name], rtol=1e-4, atol=1e-5)
    arr = decode_file(path).array()
    np.testing.assert_allclose(cnn.encode_image(image_array=arr), got, rtol=1e-5, atol=1e-6)
    gray = arr.mean(axis=2).astype(np.uint8)
    np.testing.assert_allclose(cnn.encode_image(image_array=gray), ref.encode_image(image_array=gray),
                               rtol=1e-5, atol=1e-5)


def test_unreadable_files_are_skipped_and_logged(cnn, transformed, tmp_path, caplog):
    src = sorted((transformed / "images").iterdir())[:2]
    for f in src:
        shutil.copy(f, tmp_path / f.name)
    (tmp_path / "broken.jpg").write_bytes(src[0].read_bytes()[:300])
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "empty.png").write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="dedupd"):
        enc = cnn.encode_images(tmp_path)
    assert sorted(enc) == sorted(f.name for f in src)
    logged = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    for bad in ("broken.jpg", "notes.txt", "empty.png"):
        assert bad in logged
    assert cnn.encode_image(image_file=tmp_path / "broken.jpg") is None


def test_workers_and_decoded_batches_give_the_same_encodings(cnn, ours, transformed):
    again = cnn.encode_images(transformed / "images", num_enc_workers=2)
    assert list(again) == list(ours)
    for name in ours:
        np.testing.assert_allclose(again[name], ours[name], rtol=1e-5, atol=1e-6)
    names = list(ours)[:5]
    images = [decode_file(transformed / "images" / n) for n in names]
    feats = cnn.encode_decoded(images)
    assert feats.shape == (5, 1280) and feats.dtype == np.float32
    np.testing.assert_allclose(feats, np.stack([ours[n] for n in names]), rtol=1e-4, atol=1e-5)
    unit = cnn.encode_decoded(images, normalize=True)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, rtol=1e-6)


def test_validation_errors(cnn, ours, tmp_path):
    for bad in (1, "0.9", None):
        with pytest.raises(TypeError, match="Threshold must be a float between -1.0 and 1.0"):
            cnn.find_duplicates(encoding_map=ours, min_similarity_threshold=bad)
    for bad in (-1.01, 1.5):
        with pytest.raises(ValueError, match="Threshold must be a float between -1.0 and 1.0"):
            cnn.find_duplicates_to_remove(encoding_map=ours, min_similarity_threshold=bad)
    with pytest.raises(ValueError, match="Provide either an image directory or encodings!"):
        cnn.find_duplicates()
    with pytest.raises(ValueError, match="Please provide a valid directory path!"):
        cnn.encode_images(tmp_path / "missing")
    with pytest.raises(ValueError, match="Please provide either image file path or image array!"):
        cnn.encode_image(image_file=tmp_path / "missing.jpg")
    with pytest.raises(ValueError, match="Please provide either image file path or image array!"):
        cnn.encode_image()
    with pytest.raises(AssertionError, match="expected image array shape"):  # the reference's assert
        cnn.encode_image(image_array=np.zeros((8, 8, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match="expected image array shape"):
        cnn.encode_image(image_array=np.zeros((8, 8, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match="number of image array dimensions"):
        cnn.encode_image(image_array=np.zeros((8,), dtype=np.uint8))
    with pytest.raises(ValueError, match="model and/or transform"):
        CNN(model_config=CustomModel(name="x", model=None, transform=None))
    for verbose, stored in ((True, 1), (False, 0), (1, 0)):  # the reference keeps 1 only for True
        assert type(CNN(verbose=verbose, model_config=cnn.model_config).verbose) is int
        assert CNN(verbose=verbose, model_config=cnn.model_config).verbose == stored
    assert cnn.find_duplicates(image_dir=tmp_path) == {}  # an empty folder
    with pytest.warns(SyntaxWarning, match="recursive"):
        cnn.find_duplicates(encoding_map=ours, recursive=True)
    assert cnn.find_duplicates(encoding_map=ours, min_similarity_threshold=-1.0)[next(iter(ours))] == list(ours)[1:]


def test_approximate_index_option(cnn, ours, transformed):
    """``index="ivf"`` (faiss): a subset of the exact duplicates with the same scores; on 51
    encodings it has one cell, so it is exhaustive and equal. An unknown index names the choices."""
    pytest.importorskip("faiss", reason="the test extra installs faiss-cpu (the ann extra)")
    for threshold in (0.9, 0.5):
        exact = cnn.find_duplicates(encoding_map=ours, min_similarity_threshold=threshold, scores=True)
        approx = cnn.find_duplicates(encoding_map=ours, min_similarity_threshold=threshold, scores=True, index="ivf")
        assert plain(approx) == plain(exact) and sum(map(len, exact.values())) > 0
        for k, lst in exact.items():
            np.testing.assert_allclose([s for _, s in approx[k]], [s for _, s in lst], atol=1e-6)
    removed = cnn.find_duplicates_to_remove(encoding_map=ours, index="ivf")
    assert removed == cnn.find_duplicates_to_remove(encoding_map=ours)
    with pytest.raises(ValueError, match="unknown CNN index 'annoy': use 'exact' or one of ivf"):
        cnn.find_duplicates(encoding_map=ours, index="annoy")
    with pytest.raises(ValueError, match="index='ivf' runs on this machine only"):
        cnn.find_duplicates(encoding_map=ours, index="ivf", engine="ray")

# -- MobileNetV3 default, TorchScript, import hygiene ---------------------------------------------


def test_mobilenet_missing_weights_says_how_to_provide_them(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv(mobilenet.ENV_WEIGHTS, raising=False)
    with pytest.raises(ModelUnavailableError) as info:
        load_model("mobilenet_v3_small", allow_download=False)
    text = str(info.value)
    cache = tmp_path / "hub" / "checkpoints" / "mobilenet_v3_small-047dcff4.pth"
    for needle in (str(cache), mobilenet.ENV_WEIGHTS, mobilenet.WEIGHTS_URL, "allow_download", "efficientnet_lite0"):
        assert needle in text
    with pytest.raises(ModelUnavailableError, match="mobilenet_v3_small-047dcff4.pth"):
        CNN(verbose=False, allow_download=False)
    monkeypatch.setenv(mobilenet.ENV_WEIGHTS, str(tmp_path / "nope.pth"))
    with pytest.raises(ModelUnavailableError, match="nope.pth"):
        load_model("mobilenet_v3_small", allow_download=False)


def test_mobilenet_architecture_and_reference_equivalence(tmp_path, monkeypatch, transformed):
    """Random weights placed in torchvision's cache: our default CNN and imagededup's load the same file."""
    torch.manual_seed(0)
    net = mobilenet.MobileNetV3Small().eval()
    with torch.inference_mode():
        assert net(torch.rand(2, 3, 224, 224)).shape == (2, 576)
    from torchvision.models import mobilenet_v3_small

    full = mobilenet_v3_small(weights=None)
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(full.state_dict(), cache / mobilenet.WEIGHTS_FILENAME)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv(mobilenet.ENV_WEIGHTS, raising=False)
    ours = CNN(verbose=False, allow_download=False)
    assert ours.model_config.name == "mobilenet_v3_small"
    ref_methods = pytest.importorskip("imagededup.methods")
    ref = ref_methods.CNN(verbose=False)
    files = sorted((transformed / "images").iterdir())[:3]
    for f in files:
        got, want = ours.encode_image(image_file=f), ref.encode_image(image_file=f)
        assert got.shape == want.shape == (1, 576)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # the environment variable wins over the cache
    moved = tmp_path / "elsewhere.pth"
    shutil.move(cache / mobilenet.WEIGHTS_FILENAME, moved)
    monkeypatch.setenv(mobilenet.ENV_WEIGHTS, str(moved))
    np.testing.assert_allclose(CNN(verbose=False, allow_download=False).encode_image(image_file=files[0]),
                               ours.encode_image(image_file=files[0]), rtol=1e-6)


class Tiny(torch.nn.Module):
    """A small feature model (B, 3, H, W) -> (B, 8) for the model-file tests."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x)).mean(dim=(2, 3))


# writing the file uses the deprecated API; loading it (our code) must not warn
@pytest.mark.filterwarnings(r"ignore:`torch\.jit\.(script|save)` is deprecated:FutureWarning")
def test_torchscript_model(tmp_path, transformed):
    torch.manual_seed(1)
    tiny = Tiny().eval()
    torch.jit.save(torch.jit.script(tiny), str(tmp_path / "tiny.pt"))
    model = CustomModel.from_torchscript(tmp_path / "tiny.pt")
    assert model.name == "tiny" and model.transform is mobilenet.TRANSFORM
    files = sorted((transformed / "images").iterdir())[:3]
    direct = CNN(verbose=False, model_config=CustomModel("tiny-eager", tiny, mobilenet.TRANSFORM))
    got = CNN(verbose=False, model_config=model, batch_size=2).encode_decoded([decode_file(f) for f in files])
    assert got.shape == (3, 8)
    np.testing.assert_allclose(got, direct.encode_decoded([decode_file(f) for f in files]), rtol=1e-5, atol=1e-6)
    with pytest.raises(ModelUnavailableError, match="missing.pt"):
        CustomModel.from_torchscript(tmp_path / "missing.pt")


def test_exported_program_model(tmp_path, transformed):
    torch.manual_seed(2)
    tiny = Tiny().eval()
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.export.export(tiny, (torch.rand(2, 3, 224, 224),), dynamic_shapes={"x": {0: batch}})
    torch.export.save(program, str(tmp_path / "tiny.pt2"))
    model = CustomModel.from_export(tmp_path / "tiny.pt2", name="tiny-export")
    files = sorted((transformed / "images").iterdir())[:3]
    got = CNN(verbose=False, model_config=model, batch_size=2).encode_decoded([decode_file(f) for f in files])
    want = CNN(verbose=False, model_config=CustomModel("eager", tiny, mobilenet.TRANSFORM)).encode_decoded(
        [decode_file(f) for f in files]
    )
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_import_builds_nothing_and_does_not_import_torch():
    code = (
        "import sys, dedupd.methods as m; m.CNN; m.CustomModel; import dedupd.methods.cnn; "
        "assert 'torch' not in sys.modules, 'torch imported'; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"
