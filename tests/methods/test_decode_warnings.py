"""Pillow's warnings while the library decodes, against imagededup: a large image's
``DecompressionBombWarning`` is shown, and under ``-W error`` (``warnings.simplefilter("error")``,
``pytest -W error``) a file Pillow warns about is skipped (None), never an exception out of
``encode_image`` / ``encode_images``."""

from __future__ import annotations

import io
import struct
import warnings
from pathlib import Path

import pytest
from imagededup.methods import PHash as RefPHash
from PIL import Image

from dedupd.methods import PHash

# the reference leaves files it gave up on open (a ResourceWarning when they are collected)
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def _tiff_with_a_tag_past_its_end() -> bytes:
    """A small TIFF whose ImageDescription points past the end of the file: Pillow warns
    ("Truncated File Read") while reading its header."""
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 30, 30)).save(buf, "TIFF", tiffinfo={270: "x" * 64})
    data = bytearray(buf.getvalue())
    ifd = struct.unpack_from("<I", data, 4)[0]
    (count,) = struct.unpack_from("<H", data, ifd)
    for k in range(count):
        entry = ifd + 2 + 12 * k
        if struct.unpack_from("<H", data, entry)[0] == 270:
            struct.pack_into("<I", data, entry + 8, len(data) + 1000)
    return bytes(data)


@pytest.fixture
def folder(tmp_path: Path, corpus_dir: Path) -> Path:
    photo = Image.open(sorted((corpus_dir / "base").glob("*.jpg"))[0]).convert("RGB")
    photo.thumbnail((48, 48))
    photo.save(tmp_path / "photo.png")
    (tmp_path / "warns.tif").write_bytes(_tiff_with_a_tag_past_its_end())
    return tmp_path


def test_a_file_pillow_warns_about_is_skipped_under_warnings_as_errors(folder: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert PHash().encode_image(folder / "warns.tif") is None
        assert RefPHash().encode_image(folder / "warns.tif") is None
        ours = PHash().encode_images(folder, num_enc_workers=0)
        assert ours == RefPHash().encode_images(folder, num_enc_workers=1)
    assert list(ours) == ["photo.png"]


def test_a_large_image_warns_as_in_the_reference_and_is_refused_under_warnings_as_errors(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 48 x 32 pixels, above this limit but below twice it: Pillow warns and decodes
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    path = folder / "photo.png"
    with pytest.warns(Image.DecompressionBombWarning):
        ours = PHash().encode_image(path)
    with pytest.warns(Image.DecompressionBombWarning):
        ref = RefPHash().encode_image(path)
    assert ours == ref and ours is not None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert PHash().encode_image(path) is None
        assert RefPHash().encode_image(path) is None
