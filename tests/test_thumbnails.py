"""Report thumbnails: sized as Pillow's ``Image.thumbnail`` sizes them, and close to its picture,
while a JPEG is decoded at a reduced DCT scale (real corpus photos, EXIF orientation honoured)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from dedupd.reports.thumbnails import THUMB_SIZE, fit_size, make_thumbnail


def _pillow_thumbnail(path: Path) -> Image.Image:
    """The reference: the whole image decoded, turned upright, then Pillow's LANCZOS thumbnail."""
    with Image.open(path) as img:
        ref = ImageOps.exif_transpose(img).convert("RGB")
    ref.thumbnail((THUMB_SIZE, THUMB_SIZE), Image.Resampling.LANCZOS)
    return ref


@pytest.mark.parametrize("size", [160, 64])
def test_fit_size_is_pillows_thumbnail_size(size: int) -> None:
    for w in range(1, 700, 7):
        for h in range(1, 700, 11):
            im = Image.new("1", (w, h))
            im.thumbnail((size, size))
            assert fit_size(w, h, size) == im.size, (w, h)


def test_thumbnails_match_pillows_full_decode(corpus_dir: Path, tmp_path: Path) -> None:
    photos = sorted((corpus_dir / "base").glob("*.jpg"))[:6]
    assert photos, "no corpus photos"
    made = []
    for i, src in enumerate(photos):
        with Image.open(src) as img:
            small = img.convert("RGB")
        small.thumbnail((640, 640), Image.Resampling.LANCZOS)  # the ingest benchmark's 640 px photos
        exif = Image.Exif()
        exif[0x0112] = 6 if i % 2 else 1  # every other one stored on its side (turned upright on display)
        jpg, png = tmp_path / f"p{i}.jpg", tmp_path / f"p{i}.png"
        small.save(jpg, quality=90, exif=exif.tobytes())
        small.save(png)
        made += [jpg, png]
    for path in made:
        dest = tmp_path / (path.name + ".thumb.jpg")
        assert make_thumbnail(str(path), str(dest))
        ref = _pillow_thumbnail(path)
        with Image.open(dest) as got:
            assert got.size == ref.size, path.name
            diff = np.abs(np.asarray(got.convert("RGB"), float) - np.asarray(ref, float)).mean()
        # JPEG quality 78 alone differs by ~3 levels; a wrong crop, turn or scale by tens
        assert diff < 8, (path.name, diff)
    with Image.open(tmp_path / "p1.jpg.thumb.jpg") as upright:
        assert upright.height > upright.width  # stored landscape, orientation 6: a portrait thumbnail


def test_thumbnail_workers_yield_the_cpu_to_the_ingest() -> None:
    """The thumbnail decoders run below the daemon's priority (the ingest's decoders do not)."""
    import os

    from dedupd.daemon.workers import DecodePool
    from dedupd.reports import thumbnails

    own = os.nice(0)
    try:
        assert thumbnails._workers().run(os.nice, 0) == min(19, own + thumbnails.THUMB_NICE)
    finally:
        thumbnails.stop_workers()
    plain = DecodePool("plain", 1, task_timeout_s=30)
    try:
        assert plain.run(os.nice, 0) == own
    finally:
        plain.shutdown()
