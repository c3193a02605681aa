"""The column-major horizontal passes (dedupd.resample.horizontal_passes_rgbx: one transposed copy
of the image shared by every target width) give Pillow's values bit for bit: on random images of
random shapes (1-3 px sides, odd sizes, tall and wide) and on corpus photos."""

from __future__ import annotations

import random

import numpy as np
import pytest
from PIL import Image

from dedupd import imaging, resample
from dedupd.encoding import hashes_of
from dedupd.imaging import DecodedImage, decode_file

pytestmark = pytest.mark.skipif(not resample.available(), reason="numba (the 'speed' extra) is not installed")

DEFAULT_METHODS = ["phash", "phash@c90", "phash@c81", "dhash", "dhash@c90", "dhash@c81"]


def _words(rgb: np.ndarray) -> np.ndarray:
    h, w, _ = rgb.shape
    return resample.to_words(rgb) if h and w else np.zeros((h, w), np.uint32)


def _pillow_mid(rgb: np.ndarray, width: int) -> np.ndarray:
    """Pillow's own horizontal pass: a resize of the width alone (the height unchanged)."""
    return np.asarray(Image.fromarray(rgb).resize((width, rgb.shape[0]), Image.Resampling.LANCZOS))


def _image(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    # noise, a ramp and hard edges: sums near every rounding boundary, and clipping at 0 and 255
    base = rng.integers(0, 256, (h, w, 3), dtype=np.int32)
    ramp = np.linspace(-300, 300, w, dtype=np.int32)[None, :, None]
    edges = np.where((np.arange(w) // max(1, w // 17)) % 2 == 0, 255, -255)[None, :, None]
    return np.clip(base + ramp * (rng.random() < 0.5) + edges * (rng.random() < 0.5), 0, 255).astype(np.uint8)


def test_column_copy_is_the_transposed_rgb():
    rng = np.random.default_rng(1)
    for h, w in [(1, 1), (7, 3), (8, 5), (9, 2), (33, 17)]:
        rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        cols = resample.column_copy(_words(rgb))
        assert cols.shape[0] == w and cols.shape[1] >= 3 * h
        assert np.array_equal(cols[:, :3 * h].reshape(w, h, 3), rgb.transpose(1, 0, 2)), (h, w)


@pytest.mark.parametrize("seed", range(4))
def test_random_shapes_match_pillows_horizontal_pass(seed):
    rng, pyr = np.random.default_rng(seed), random.Random(seed)
    shapes = [(1, 2), (2, 3), (3, 3), (1, 700), (700, 3), (5, 1001), (1201, 7), (9, 640), (481, 640)]
    shapes += [(pyr.randint(1, 400), pyr.randint(2, 900)) for _ in range(6)]
    for h, w in shapes:
        rgb = _image(rng, h, w)
        widths = sorted({1, max(1, w - 1), pyr.randint(1, w - 1), min(w - 1, 9), min(w - 1, 32)} - {0})
        words = _words(rgb)
        made = resample.horizontal_passes_rgbx(words, widths)  # the column copy made here ...
        given = resample.horizontal_passes_rgbx(words, widths[::-1], resample.column_copy(words))  # ... or given
        for width in widths:
            want = _pillow_mid(rgb, width)
            assert np.array_equal(made[width], want), (h, w, width)
            assert np.array_equal(given[width], want), (h, w, width)


@pytest.mark.parametrize("seed", range(2))
def test_random_images_resize_like_pillow_through_decoded_image(monkeypatch, seed):
    monkeypatch.setattr(imaging, "ACCELERATE_MIN_PIXELS", 0)
    rng, pyr = np.random.default_rng(10 + seed), random.Random(10 + seed)
    for _ in range(5):
        w, h = pyr.randint(2, 900), pyr.randint(1, 600)
        img = Image.fromarray(_image(rng, h, w))
        sizes = [(32, 32), (9, 8), (8, 8), (pyr.randint(1, w), pyr.randint(1, 200)), (max(1, w - 1), 3)]
        got = DecodedImage(img, w, h, None).grays(sizes)
        for size in sizes:
            want = np.asarray(img.resize(size, Image.Resampling.LANCZOS).convert("L"))
            assert np.array_equal(got[size], want), (w, h, size)


def test_large_images_take_the_words_passes(monkeypatch):
    # above COLUMNS_MAX_PIXELS no column copy is made (the row-major passes are faster there); same values
    monkeypatch.setattr(imaging, "ACCELERATE_MIN_PIXELS", 0)
    rgb = _image(np.random.default_rng(3), 301, 257)
    img = Image.fromarray(rgb)
    sizes = [(32, 32), (9, 8), (129, 100)]
    for limit, kept in [(301 * 257 - 1, False), (301 * 257, True)]:
        monkeypatch.setattr(imaging, "COLUMNS_MAX_PIXELS", limit)
        image = DecodedImage(img, 257, 301, None)
        got = image.grays(sizes)
        assert ("columns" in image.__dict__) == kept
        for size in sizes:
            want = np.asarray(img.resize(size, Image.Resampling.LANCZOS).convert("L"))
            assert np.array_equal(got[size], want), (limit, size)


def test_only_wide_targets_make_the_column_copy(monkeypatch):
    # pHash and dHash alone (narrow targets) read the words; the crops' reduced copies (wide) the columns
    monkeypatch.setattr(imaging, "ACCELERATE_MIN_PIXELS", 0)
    img = Image.fromarray(_image(np.random.default_rng(4), 480, 640))
    image = DecodedImage(img, 640, 480, None)
    got = image.grays([(32, 32), (9, 8)])
    assert "columns" not in image.__dict__
    reduced = image.reduced((341, 256))
    assert "columns" in image.__dict__
    for size in [(32, 32), (9, 8)]:
        assert np.array_equal(got[size], np.asarray(img.resize(size, Image.Resampling.LANCZOS).convert("L")))
    want = imaging._rgbx_words(img.resize((341, 256), Image.Resampling.LANCZOS))
    assert isinstance(reduced, np.ndarray) and np.array_equal(reduced & 0xFFFFFF, want & 0xFFFFFF)


def _corpus_photos(corpus_dir, n: int) -> list:
    files = sorted((corpus_dir / "base").glob("*.jpg"))
    assert files, f"no photos in {corpus_dir / 'base'}"
    return files[:: max(1, len(files) // n)][:n]


def test_corpus_photos_at_640_px_hash_like_pillow(monkeypatch, tmp_path, corpus_dir):
    """The daemon's default hashes (pHash, dHash and their crops) of photos scaled to 640 px, with the
    compiled passes at every size (as in a decode worker) and with Pillow's resizes alone."""
    photos = _corpus_photos(corpus_dir, 6)
    files = []
    for i, path in enumerate(photos):
        with Image.open(path) as im:
            im = im.convert("RGB")
            im.thumbnail((640, 640), Image.Resampling.BICUBIC)
            files.append(tmp_path / f"p{i}.jpg")
            im.save(files[-1], quality=88)
    monkeypatch.setattr(imaging, "ACCELERATE_MIN_PIXELS", 0)
    fast = {f: hashes_of(decode_file(f), DEFAULT_METHODS) for f in files}
    image = decode_file(files[0])
    hashes_of(image, DEFAULT_METHODS)
    assert "columns" in image.__dict__  # the column copy was used (and kept) on this path
    monkeypatch.setattr(resample, "available", lambda: False)
    for f in files:
        assert fast[f] == hashes_of(decode_file(f), DEFAULT_METHODS), f.name


def test_corpus_photo_full_size_passes_match_pillow(corpus_dir):
    path = _corpus_photos(corpus_dir, 1)[0]
    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB"))
    words = _words(rgb)
    h, w = words.shape
    widths = [32, 9, 8, 256, round(w * 256 / min(w, h)), round(w * 72 / min(w, h))]
    got = resample.horizontal_passes_rgbx(words, widths)
    for width in widths:
        assert np.array_equal(got[width], _pillow_mid(rgb, width)), width
