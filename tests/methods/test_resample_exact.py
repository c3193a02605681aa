"""The accelerated LANCZOS pass (dedupd.resample) gives Pillow's values bit for bit, and hashes of
camera-sized photos stay identical to imagededup's."""

from __future__ import annotations

import random

import numpy as np
import pytest
from PIL import Image

from dedupd import imaging, resample
from dedupd.core.algorithms import HASH_METHODS, TARGET_SIZES
from dedupd.encoding import encode_file
from dedupd.imaging import DecodedImage, decode_file

pytestmark = pytest.mark.skipif(not resample.available(), reason="numba (the 'speed' extra) is not installed")


def _pillow_gray(rgb: Image.Image, size: tuple[int, int]) -> np.ndarray:  # Pillow alone
    return np.asarray(rgb.resize(size, Image.Resampling.LANCZOS).convert("L"))


def _smooth_noise(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    # noise plus gradients and hard edges: values near every rounding boundary, and clipping
    base = rng.integers(0, 256, (h, w, 3), dtype=np.uint8).astype(np.int32)
    ramp = np.linspace(-200, 200, w, dtype=np.int32)[None, :, None]
    edges = np.where((np.arange(w) // 3) % 2 == 0, 255, -255)[None, :, None]
    return np.clip(base + ramp + edges * (rng.random() < 0.5), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("seed", range(6))
def test_random_images_and_sizes_match_pillow(monkeypatch, seed):
    monkeypatch.setattr(imaging, "ACCELERATE_MIN_PIXELS", 0)
    rng = np.random.default_rng(seed)
    pyr = random.Random(seed)
    for _ in range(6):
        w, h = pyr.randint(2, 1500), pyr.randint(1, 700)
        rgb = Image.fromarray(_smooth_noise(rng, h, w))
        sizes = [*TARGET_SIZES.values(), (pyr.randint(1, w), pyr.randint(1, 300)), (max(1, w - 1), 5)]
        got = DecodedImage(rgb, w, h, None).grays(sizes)
        for size in sizes:
            assert np.array_equal(got[size], _pillow_gray(rgb, size)), (w, h, size)


def test_coefficients_sum_like_pillow():
    for n_in, n_out in [(4000, 8), (2829, 9), (3000, 32), (4242, 256), (300, 256), (10, 9)]:
        bounds, coefs = resample.coefficients(n_in, n_out)
        assert bounds[:, 0].min() >= 0 and (bounds[:, 0] + bounds[:, 1]).max() <= n_in
        # each row is normalised to 1.0 in 22-bit fixed point, up to the rounding of each tap
        sums = coefs.sum(axis=1)
        assert np.all(np.abs(sums - (1 << resample.PRECISION_BITS)) <= bounds[:, 1])


def test_non_contiguous_and_rgbx_planes_agree():
    rng = np.random.default_rng(7)
    rgb = rng.integers(0, 256, (33, 47, 3), dtype=np.uint8)
    rgbx = np.concatenate([rgb, np.zeros((33, 47, 1), np.uint8)], axis=2)
    a, b = resample.rgb_planes(rgb), resample.rgb_planes(rgbx)
    assert np.array_equal(a, b) and np.array_equal(a, rgb.transpose(2, 0, 1))


@pytest.fixture(scope="module")
def camera_photos(dataset):
    return sorted(p for p in (dataset("mixed", "--count", "6", "--megapixels", "1.5", "--transforms",
                                      "png,webp,jpeg60,grayscale") / "images").iterdir())


def test_camera_photos_hash_like_imagededup(camera_photos):
    ref = pytest.importorskip("imagededup.methods", reason="the test extra installs imagededup")
    refs = {"phash": ref.PHash(verbose=False), "ahash": ref.AHash(verbose=False), "dhash": ref.DHash(verbose=False),
            "whash": ref.WHash(verbose=False)}
    assert len(camera_photos) >= 5
    for path in camera_photos:
        image = decode_file(path)
        assert image.width * image.height >= imaging.ACCELERATE_MIN_PIXELS
        got = encode_file(path, HASH_METHODS).hashes
        for m in HASH_METHODS:
            assert f"{got[m]:016x}" == refs[m].encode_image(image_file=str(path)), (path.name, m)


@pytest.mark.parametrize("w,h,side", [(300, 593, 8), (300, 592, 8), (300, 569, 32), (300, 568, 32),
                                      (300, 345, 256), (300, 344, 256), (120, 250, 9)])
def test_pass_order_boundary(monkeypatch, w, h, side):
    # around the height at which Pillow switches to vertical-first: always Pillow's values
    monkeypatch.setattr(imaging, "ACCELERATE_MIN_PIXELS", 0)
    rgb = Image.fromarray(np.random.default_rng(h).integers(0, 256, (h, w, 3), dtype=np.uint8))
    size = (side, side if side != 9 else 8)
    assert np.array_equal(DecodedImage(rgb, w, h, None).grays([size])[size], _pillow_gray(rgb, size))


def test_image_in_several_memory_blocks_takes_the_copy_path(monkeypatch):
    # rows spread over Pillow blocks cannot be read in place: the pixels are copied, same values
    monkeypatch.setattr(imaging, "ACCELERATE_MIN_PIXELS", 0)
    old = Image.core.get_block_size()
    Image.core.set_block_size(4096)
    try:
        rgb = Image.fromarray(_smooth_noise(np.random.default_rng(3), 300, 1700))
    finally:
        Image.core.set_block_size(old)
    assert imaging._rgbx_words(rgb) is None
    sizes = list(TARGET_SIZES.values())
    got = DecodedImage(rgb, rgb.width, rgb.height, None).grays(sizes)
    for size in sizes:
        assert np.array_equal(got[size], _pillow_gray(rgb, size)), size
    single = Image.fromarray(np.asarray(rgb))
    assert imaging._rgbx_words(single) is not None


def test_pixels_read_in_place_outlive_their_image():
    """The words of a temporary image stay valid after every other reference to it is gone, in
    views too (the pixels were freed and reused under them when the pin was lost)."""
    import gc

    arr = _smooth_noise(np.random.default_rng(5), 200, 300)
    words = imaging._rgbx_words(Image.fromarray(arr))
    rows = words[10:]  # a view of the view
    assert words is not None and words.flags.writeable is True
    del words
    gc.collect()
    churn = [Image.fromarray(arr[::-1].copy()) for _ in range(20)]  # reuse freed memory
    rgb = np.stack([(rows >> s) & 0xFF for s in (0, 8, 16)], axis=2).astype(np.uint8)
    assert np.array_equal(rgb, arr[10:]) and len(churn) == 20


def test_kernels_use_pillows_precision():
    from dedupd import resample_kernels

    assert resample_kernels.PRECISION_BITS == resample.PRECISION_BITS == 22


def test_compiled_coefficients_equal_the_python_reference():
    rng = random.Random(11)
    pairs = [(4000, 8), (2829, 9), (4242, 32), (3000, 256), (255, 256), (10, 9), (1, 1), (7, 300)]
    pairs += [(rng.randint(1, 6000), rng.randint(1, 400)) for _ in range(60)]
    for n_in, n_out in pairs:
        b1, c1 = resample.coefficients(n_in, n_out)
        b2, c2 = resample.reference_coefficients(n_in, n_out)
        assert np.array_equal(b1, b2) and np.array_equal(c1, c2), (n_in, n_out)


@pytest.mark.parametrize("seed", range(3))
def test_resized_rgb_matches_pillow_at_every_size(monkeypatch, seed):
    # the crop variants' reduced copy (DecodedImage.resized), at every size (a daemon worker: from 10,000 pixels)
    monkeypatch.setattr(imaging, "ACCELERATE_MIN_PIXELS", 0)
    rng = np.random.default_rng(100 + seed)
    pyr = random.Random(seed)
    for _ in range(8):
        w, h = pyr.randint(2, 900), pyr.randint(2, 700)
        rgb = Image.fromarray(_smooth_noise(rng, h, w))
        for size in [(pyr.randint(1, w), pyr.randint(1, h)), (max(1, w // 3), max(1, h // 3)), (72, 54)]:
            got = DecodedImage(rgb, w, h, None).resized(size)
            assert got.size == size and np.array_equal(np.asarray(got), np.asarray(rgb.resize(size, Image.Resampling.LANCZOS))), (w, h, size)


def test_small_photos_hash_alike_with_every_variant_accelerated(monkeypatch, dataset):
    # 640 px photos (and their edits): every hash and variant the daemon computes, Pillow's resize vs
    # the compiled passes used at every size (imaging.accelerate_small_images)
    from dedupd.core import variants

    photos = sorted((dataset("mixed", "--count", "12", "--transforms", "png,webp,jpeg60,grayscale,crop,downscale50")
                     / "images").iterdir())
    keys = [*HASH_METHODS, *(f"{m}@{v}" for m in ("phash", "dhash") for v in variants.CROP_SCALES), "phash@d1"]
    monkeypatch.setattr(imaging, "ACCELERATE_MIN_PIXELS", 10**12)
    plain = {p: encode_file(p, keys).hashes for p in photos}
    monkeypatch.setattr(imaging, "ACCELERATE_MIN_PIXELS", 0)
    assert all(encode_file(p, keys).hashes == plain[p] for p in photos)
    assert imaging.accelerate_small_images() and imaging.ACCELERATE_MIN_PIXELS == imaging.SMALL_IMAGE_PIXELS


@pytest.mark.parametrize("seed", range(3))
def test_box_resizes_match_pillow(monkeypatch, seed):
    # the crop variants' resizes (imaging.resize_box): random boxes and the crop boxes, with the box
    # bounds as Pillow's C floats (its float subtraction too); every case the compiled path takes
    from dedupd.core import variants

    monkeypatch.setattr(imaging, "ACCELERATE_MIN_PIXELS", 0)
    rng = np.random.default_rng(200 + seed)
    pyr = random.Random(seed)
    compiled = 0
    for k in range(150):
        w, h = pyr.randint(10, 420), pyr.randint(10, 420)
        rgb = Image.fromarray(_smooth_noise(rng, h, w))
        if k % 2:
            box = variants.crop_box(w, h, pyr.choice(list(variants.CROP_SCALES)))
        else:
            (left, right), (top, bottom) = sorted(pyr.uniform(0, w) for _ in "lr"), sorted(pyr.uniform(0, h) for _ in "tb")
            box = (left, top, right, bottom)
        size = pyr.choice([(32, 32), (9, 8), (8, 8), (pyr.randint(1, 60), pyr.randint(1, 60))])
        compiled += resample.box_applies(w, h, size, box)
        got = imaging.resize_box(rgb, size, box)
        assert np.array_equal(np.asarray(got), np.asarray(rgb.resize(size, Image.Resampling.LANCZOS, box=box))), (
            w, h, size, box)
    assert compiled >= 50  # the compiled path was exercised, not only Pillow's fallback


def test_compiled_box_coefficients_equal_the_python_reference():
    rng = random.Random(12)
    for _ in range(80):
        n_in, n_out = rng.randint(2, 3000), rng.randint(1, 300)
        a, b = sorted(rng.uniform(0, n_in) for _ in "ab")
        span = resample.box_span(a, b)
        b1, c1 = resample.coefficients(n_in, n_out, span)
        b2, c2 = resample.reference_coefficients(n_in, n_out, span)
        assert np.array_equal(b1, b2) and np.array_equal(c1, c2), (n_in, n_out, span)


@pytest.mark.parametrize("seed", range(2))
def test_gray_box_resizes_from_words_and_images_match_pillow(monkeypatch, seed):
    # the crop variants' gray resizes (imaging.resize_box_gray) from each source the encoder hands
    # them: a Pillow image, the full image's RGBX words (DecodedImage.source) and a reduced copy's
    # words (DecodedImage.reduced); boxes the compiled path takes and boxes it does not (Pillow then)
    from dedupd.core import variants

    monkeypatch.setattr(imaging, "ACCELERATE_MIN_PIXELS", 0)
    rng = np.random.default_rng(300 + seed)
    pyr = random.Random(seed)
    compiled = fallback = 0
    for k in range(60):
        w, h = pyr.randint(10, 700), pyr.randint(10, 500)
        rgb = Image.fromarray(_smooth_noise(rng, h, w))
        image = DecodedImage(rgb, w, h, "PNG")
        side = pyr.randint(8, max(9, min(w, h)))
        size_r = (max(1, round(w * side / min(w, h))), max(1, round(h * side / min(w, h))))
        want_r = rgb.resize(size_r, Image.Resampling.LANCZOS)
        reduced = image.reduced(size_r)
        if isinstance(reduced, np.ndarray):  # the words of the same pixels (the X byte is never read)
            assert np.array_equal(reduced & 0xFFFFFF, imaging._rgbx_words(want_r) & 0xFFFFFF)
        for src, pil in ((image.source(), rgb), (rgb, rgb), (reduced, want_r)):
            sw, sh = pil.size
            if k % 3 == 0:
                (left, right), (top, bottom) = sorted(pyr.uniform(0, sw) for _ in "lr"), sorted(
                    pyr.uniform(0, sh) for _ in "tb")
                box = (left, top, right, bottom)
            else:
                box = variants.crop_box(sw, sh, pyr.choice(list(variants.CROP_SCALES)))
            size = pyr.choice([(32, 32), (9, 8), (8, 8), (pyr.randint(1, 60), pyr.randint(1, 60))])
            applies = isinstance(src, np.ndarray) and resample.box_applies(sw, sh, size, box)
            compiled += applies
            fallback += isinstance(src, np.ndarray) and not applies
            got = imaging.resize_box_gray(src, size, box)
            want = np.asarray(pil.resize(size, Image.Resampling.LANCZOS, box=box).convert("L"))
            assert got.dtype == np.uint8 and np.array_equal(got, want), (w, h, size, box, type(src))
    assert compiled >= 40 and fallback >= 5  # both ways were exercised


def test_compiled_gray_and_words_equal_pillows_conversions():
    rng = np.random.default_rng(5)
    for h, w in ((1, 1), (7, 13), (64, 37), (256, 341)):
        rgb = _smooth_noise(rng, h, w)
        img = Image.fromarray(rgb)
        assert np.array_equal(resample.to_gray(rgb), np.asarray(img.convert("L")))
        assert np.array_equal(resample.to_words(rgb) & 0xFFFFFF, imaging._rgbx_words(img) & 0xFFFFFF)


def test_cache_warm_needs_every_kernel_newer_than_its_source(tmp_path):
    import os
    import sys

    source = tmp_path / "resample_kernels.py"
    source.write_text("# kernels\n")
    os.utime(source, (1_000, 1_000))
    assert not resample.cache_warm(str(tmp_path))  # no __pycache__ at all
    cache = tmp_path / "__pycache__"
    cache.mkdir()
    tag = f"py{sys.version_info.major}{sys.version_info.minor}"
    for k, name in enumerate(resample.KERNELS):
        (cache / f"resample_kernels.{name}-{100 + k}.{tag}.nbi").write_bytes(b"")
    assert resample.cache_warm(str(tmp_path))
    # one kernel missing, or cached for another Python, or older than the source: a build is due
    last = cache / f"resample_kernels.{resample.KERNELS[-1]}-{100 + len(resample.KERNELS) - 1}.{tag}.nbi"
    last.rename(cache / f"resample_kernels.{resample.KERNELS[-1]}-7.py30.nbi")
    assert not resample.cache_warm(str(tmp_path))
    (cache / f"resample_kernels.{resample.KERNELS[-1]}-7.{tag}.nbi").write_bytes(b"")
    assert resample.cache_warm(str(tmp_path))
    os.utime(source)  # edited now: newer than every cached pass
    assert not resample.cache_warm(str(tmp_path))
    # this package's own cache after every pass is built (what make install leaves)
    resample.build_all()
    assert resample.cache_warm()
