"""HEIC and AVIF copies (written by pillow-heif and Pillow's AVIF plugin) are decoded and grouped
with their original by ``dedupd scan`` with the default config; the library API skips them, as
imagededup does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, features

from dedupd.imaging import decode_file, supported_formats


def _photo(corpus_dir: Path) -> Image.Image:
    img = Image.open(sorted((corpus_dir / "base").glob("*.jpg"))[3]).convert("RGB")
    img.thumbnail((640, 640))
    return img


def test_scan_groups_heic_and_avif_copies(corpus_dir: Path, tmp_path: Path) -> None:
    pillow_heif = pytest.importorskip("pillow_heif", reason="the `heif` extra (pillow-heif) is not installed")
    if not features.check("avif"):
        pytest.skip("this Pillow has no AVIF plugin")
    photos = tmp_path / "photos"
    photos.mkdir()
    img = _photo(corpus_dir)
    img.save(photos / "original.png")
    pillow_heif.from_pillow(img).save(str(photos / "copy.heic"), quality=70)
    img.save(photos / "copy.avif", quality=60)
    # an unrelated photo in the same formats: must not join the group
    other = Image.open(sorted((corpus_dir / "base").glob("*.jpg"))[40]).convert("RGB")
    other.thumbnail((640, 640))
    pillow_heif.from_pillow(other).save(str(photos / "other.heic"), quality=70)
    for name in ("copy.heic", "copy.avif"):
        assert decode_file(photos / name, formats=supported_formats()).format in ("HEIF", "AVIF")

    env = {**os.environ, "DEDUPD_STORE_DIR": str(tmp_path / "store"), "DEDUPD_REPORT_DIR": str(tmp_path / "reports")}
    res = subprocess.run([sys.executable, "-m", "dedupd", "scan", str(photos), "--json"], capture_output=True,
                         text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    text = json.dumps(json.loads(res.stdout))
    groups = json.loads((tmp_path / "reports" / "groups.json").read_text())
    groups = groups["groups"] if isinstance(groups, dict) else groups
    members = [{g["keep"]["path"], *(d["path"] for d in g["duplicates"])} for g in groups]
    want = {str(photos / n) for n in ("original.png", "copy.heic", "copy.avif")}
    assert want in members, (members, text)


# the reference leaves the refused file open (a ResourceWarning when it is collected)
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_the_library_skips_heic_and_avif_as_the_reference_does(corpus_dir: Path, tmp_path: Path) -> None:
    pillow_heif = pytest.importorskip("pillow_heif", reason="the `heif` extra (pillow-heif) is not installed")
    if not features.check("avif"):
        pytest.skip("this Pillow has no AVIF plugin")
    from imagededup.methods import PHash as RefPHash

    from dedupd.methods import PHash

    img = _photo(corpus_dir)
    img.save(tmp_path / "original.jpg")
    pillow_heif.from_pillow(img).save(str(tmp_path / "copy.heic"), quality=70)
    img.save(tmp_path / "copy.avif", quality=60)
    supported_formats()  # the daemon's openers registered in this process too: the library must still skip
    for name in ("copy.heic", "copy.avif"):
        assert PHash().encode_image(tmp_path / name) is None
        assert RefPHash().encode_image(tmp_path / name) is None
    ours = PHash().encode_images(tmp_path, num_enc_workers=0)
    assert ours == RefPHash().encode_images(tmp_path, num_enc_workers=1)
    assert list(ours) == ["original.jpg"]
