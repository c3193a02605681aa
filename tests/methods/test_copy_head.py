"""The shipped copy-detection model (EfficientNet-Lite0 + trained head) on held-out corpus photos."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

torch = pytest.importorskip("torch", reason="the cnn extra installs torch")

from dedupd.cnn_models import FEATURE_DIMS, load_model  # noqa: E402
from dedupd.cnn_models.copy_head import HEAD_FILE, CopyHead, head_meta  # noqa: E402
from dedupd.cnn_models.runtime import FeatureExtractor  # noqa: E402
from dedupd.errors import ModelUnavailableError  # noqa: E402
from dedupd.methods import CNN  # noqa: E402

pytestmark = pytest.mark.cnn
REPO = Path(__file__).resolve().parents[2]


def held_out_bases(corpus_dir: Path, n: int) -> list[Path]:
    """Bases the head never saw in training (number % 5 == 0, as tools/train_copy_head.py)."""
    return [p for p in sorted((corpus_dir / "base").glob("*.jpg")) if int(p.stem[1:]) % 5 == 0][:n]


def edited_copy(path: Path, k: int) -> Image.Image:
    """A copy as it turns up on disks: zoomed and cropped, mirrored or recoloured, recompressed."""
    with Image.open(path) as im:
        img = im.convert("RGB")
    w, h = img.size
    img = img.crop((w // 12, h // 12, w - w // 12, h - h // 12)).resize((w * 2 // 3, h * 2 // 3))
    img = ImageOps.mirror(img) if k % 2 else ImageEnhance.Brightness(img).enhance(1.3)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=50)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


@pytest.fixture(scope="module")
def copy_model():
    return load_model("efficientnet_lite0_copy")


def test_shipped_head_is_small_pickle_free_and_records_its_training():
    assert HEAD_FILE.is_file() and HEAD_FILE.stat().st_size < 3_000_000
    with np.load(HEAD_FILE, allow_pickle=False) as data:
        assert {"w1", "b1", "w2", "b2", "mean", "std", "meta"} <= set(data.files)
    meta = head_meta()
    for key in ("seed", "steps", "views_per_base", "trained_bases", "threshold", "total_minutes", "held_out_rule"):
        assert key in meta, key
    assert 0 < meta["threshold"] < 1


def test_a_damaged_head_file_names_the_file_and_the_fix(tmp_path):
    bad = tmp_path / "head.npz"
    bad.write_bytes(b"not a numpy archive")
    with pytest.raises(ModelUnavailableError, match=r"head\.npz.*retrain"):
        CopyHead.load(bad)


def test_held_out_copies_clear_the_threshold_and_other_photos_do_not(corpus_dir, copy_model):
    bases = held_out_bases(corpus_dir, 8)
    originals = [Image.open(p).convert("RGB") for p in bases]
    copies = [edited_copy(p, k) for k, p in enumerate(bases)]
    ex = FeatureExtractor(copy_model, device="cpu", batch_size=16)
    a, b = ex.encode_pil(originals), ex.encode_pil(copies)
    assert a.shape == (8, FEATURE_DIMS["efficientnet_lite0_copy"])
    assert np.allclose(np.linalg.norm(a, axis=1), 1, atol=1e-4)
    sims = a @ b.T
    t = head_meta()["threshold"]
    assert (np.diag(sims) >= t).all(), np.diag(sims)
    off = sims[~np.eye(8, dtype=bool)]
    assert (off < t).all(), off.max()
    among = a @ a.T
    assert (among[~np.eye(8, dtype=bool)] < t).all()


def test_library_cnn_groups_copies_with_the_copy_model(corpus_dir, copy_model, tmp_path):
    bases = held_out_bases(corpus_dir, 4)
    for k, p in enumerate(bases):
        shutil.copy(p, tmp_path / f"orig{k}.jpg")
        edited_copy(p, k).save(tmp_path / f"copy{k}.jpg", quality=90)
    found = CNN(verbose=False, model_config=copy_model).find_duplicates(
        image_dir=tmp_path, min_similarity_threshold=head_meta()["threshold"])
    assert {k: sorted(v) for k, v in found.items()} == {
        **{f"orig{k}.jpg": [f"copy{k}.jpg"] for k in range(4)},
        **{f"copy{k}.jpg": [f"orig{k}.jpg"] for k in range(4)},
    }


def test_training_script_retrains_a_loadable_head(corpus_dir, tmp_path):
    out = tmp_path / "head.npz"
    run = subprocess.run(
        [sys.executable, str(REPO / "tools" / "train_copy_head.py"), "--base", str(corpus_dir / "base"),
         "--max-bases", "9", "--views", "1", "--steps", "20", "--out", str(out)],
        capture_output=True, text=True, timeout=300, cwd=REPO)
    assert run.returncode == 0, run.stderr[-2000:]
    meta = head_meta(out)
    assert meta["steps"] == 20 and meta["views_per_base"] == 1
    assert CopyHead.load(out)(torch.zeros(2, 1280)).shape == (2, 256)
