"""Report thumbnails: sized as Pillow's ``Image.thumbnail`` sizes them, and close to its picture,
while a JPEG is decoded at a reduced DCT scale (real corpus photos, EXIF orientation honoured);
made in worker processes many files a task, a hostile file costing only its own thumbnail."""

from __future__ import annotations

import math
import os
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from dedupd.reports.thumbnails import THUMB_SIZE, fit_size, render_thumbnail


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
        data = render_thumbnail(str(path))
        assert data is not None
        dest.write_bytes(data)
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


def _photos(corpus_dir: Path, count: int) -> list[Path]:
    return sorted((corpus_dir / "base").glob("*.jpg"))[:count]


def test_many_thumbnails_a_worker_task(corpus_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Small files go to the workers in batches (not one task each), spread over every worker, and
    each thumbnail is the one :func:`render_thumbnail` makes alone; files over
    ``THUMB_BATCH_BYTES`` together are tasks of their own."""
    from dedupd.reports import thumbnails

    small = tmp_path / "small"
    small.mkdir()
    files = []
    for i, src in enumerate(_photos(corpus_dir, 40)):
        with Image.open(src) as img:
            img.convert("RGB").resize((64, 48)).save(small / f"{i:02d}.jpg", quality=90)
        files.append(small / f"{i:02d}.jpg")
    thumbnails.stop_workers()
    tasks: list[int] = []
    run = thumbnails.DecodePool.run

    def counted(pool, fn, *args):  # the real pool, counting what each task carries
        if fn is thumbnails.render_thumbnails:
            tasks.append(len(args[0]))
        return run(pool, fn, *args)

    monkeypatch.setattr(thumbnails.DecodePool, "run", counted)
    try:
        names = thumbnails.ensure_thumbnails([(str(f), bytes([i]) * 16) for i, f in enumerate(files)],
                                             str(tmp_path / "cache"))
        assert tasks == [20, 20]  # 40 small files: one task a worker (THUMB_WORKERS = 2)
        for i, f in enumerate(files):
            assert names[str(f)] == bytes([i]).hex() * 16 + ".jpg"
            assert (tmp_path / "cache" / names[str(f)]).read_bytes() == render_thumbnail(str(f))
        big = _photos(corpus_dir, 3)  # any two of them over the cap together: a task each
        monkeypatch.setattr(thumbnails, "THUMB_BATCH_BYTES", min(p.stat().st_size for p in big))
        tasks.clear()
        thumbnails.ensure_thumbnails([(str(f), bytes([100 + i]) * 16) for i, f in enumerate(big)],
                                     str(tmp_path / "cache"))
        assert tasks == [1, 1, 1]
    finally:
        thumbnails.stop_workers()


def test_a_hanging_file_costs_only_its_own_thumbnail(corpus_dir: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A named pipe among photos hangs its worker (opening it waits for a writer forever): the batch
    it was in times out, and is made again file by file, so that the photos around it get their
    thumbnails and only the pipe gets the ``.err`` marker; in the background too."""
    from dedupd.reports import thumbnails

    photos = _photos(corpus_dir, 5)
    fifo = tmp_path / "upload.jpg"
    os.mkfifo(fifo)
    items = [(str(p), bytes([i]) * 16) for i, p in enumerate(photos)]
    items.insert(2, (str(fifo), b"\xee" * 16))
    thumbnails.stop_workers()
    monkeypatch.setattr(thumbnails, "THUMB_TIMEOUT_S", 3.0)
    monkeypatch.setattr(thumbnails, "THUMB_BATCH_BYTES", 1 << 30)  # the pipe shares a task with photos
    cache = tmp_path / "cache"
    try:
        names = thumbnails.ensure_thumbnails(items, str(cache))
        assert names == {p: (None if p == str(fifo) else d.hex() + ".jpg") for p, d in items}
        assert (cache / ("ee" * 16 + ".err")).exists()
        assert sorted(f.name for f in cache.iterdir() if f.suffix == ".err") == ["ee" * 16 + ".err"]
        # the same in the background, as the daemon asks: nothing waits, on_made says when
        done = threading.Event()
        again = [(p, bytes([200 + i]) * 16) for i, (p, _) in enumerate(items)]
        first = thumbnails.ensure_thumbnails(again, str(cache), on_made=done.set)
        assert set(first.values()) == {None}
        made: dict[str, str | None] = {}
        for _ in range(4):  # on_made after every 256 and at the end: here once
            assert done.wait(60)
            done.clear()
            made = thumbnails.ensure_thumbnails(again, str(cache), on_made=done.set)
            if sum(v is not None for v in made.values()) == len(photos):
                break
        assert made == {p: (None if p == str(fifo) else d.hex() + ".jpg") for p, d in again}
    finally:
        thumbnails.stop_workers()


def test_a_thumbnail_that_cannot_be_written_is_a_placeholder_not_a_failure(
        corpus_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write that fails (here a folder stands where the thumbnail goes; a full disk alike) costs
    that thumbnail only: the others are made, nothing raises, and no failure marker is left, so the
    next report makes it once it can be written. Logged once a minute at most (a full disk fails
    them all)."""
    from dedupd.reports import thumbnails

    monkeypatch.setattr(thumbnails, "_warned_at", -math.inf)  # no warning earlier in this process counts

    photos = _photos(corpus_dir, 3)
    items = [(str(p), bytes([i]) * 16) for i, p in enumerate(photos)]
    cache = tmp_path / "cache"
    (cache / (bytes([1]).hex() * 16 + ".jpg")).mkdir(parents=True)  # os.replace onto a folder fails
    thumbnails.stop_workers()
    try:
        names = thumbnails.ensure_thumbnails(items, str(cache))
        assert names == {str(photos[0]): "00" * 16 + ".jpg", str(photos[1]): None, str(photos[2]): "02" * 16 + ".jpg"}
        assert thumbnails.ensure_thumbnail(str(photos[1]), bytes([1]) * 16, str(cache)) is None  # the one-file path too
        warned = [r for r in caplog.records if "could not write" in r.getMessage()]
        assert len(warned) == 1 and str(cache / ("01" * 16 + ".jpg")) in warned[0].getMessage()
        assert not list(cache.glob("*.err")) and not list(cache.glob(".dedupd-tmp-*"))
        (cache / ("01" * 16 + ".jpg")).rmdir()  # writable again: made now
        assert thumbnails.ensure_thumbnails(items, str(cache))[str(photos[1])] == "01" * 16 + ".jpg"
    finally:
        thumbnails.stop_workers()
