"""Small JPEG thumbnails for the HTML report, one per content digest, generated once.

A thumbnail is ``<cache_dir>/<digest hex>.jpg`` (at most ``size`` px on its longer side). The
original is only ever opened for reading. A file that cannot be decoded gets a ``<digest>.err``
marker instead, so it is not retried on every report, and the report shows a placeholder.
Decoding happens only in worker processes (a small pool of this process, apart from the daemon's
ingest and query pools), with the encoders' format allow-list and pixel limit (``max_pixels``);
they send back the JPEG bytes, which this process writes one at a time, atomically (temp file +
rename), so a reader or a concurrent writer never sees half a JPEG.
The daemon does not wait for them: :func:`ensure_thumbnails` with ``on_made`` returns what is
cached and has the rest made in the background (a report shows placeholders until the next one).
"""

from __future__ import annotations

import io
import logging
import math
import os
import stat
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

from dedupd.daemon.config.model import DEFAULT_MAX_PIXELS, DEFAULT_REPORT_MODE
from dedupd.daemon.workers import DecodeFailed, DecodePool
from dedupd.reports.atomic import file_mode, write_atomic

logger = logging.getLogger(__name__)

THUMB_SIZE = 160
THUMB_EXT = ".jpg"
#: Thumbnail decodes at once (worker processes); a report waits for its thumbnails, queries do not.
THUMB_WORKERS = 2
#: Threads feeding them: twice as many, so that while one thread writes the thumbnails a worker
#: sent back, another's task already runs (the pool still runs at most THUMB_WORKERS at once)
THUMB_THREADS = 2 * THUMB_WORKERS
#: A thumbnail decode that takes longer is stopped; the file gets the placeholder.
THUMB_TIMEOUT_S = 60.0
#: Thumbnails made per worker task, at most: a task each cost ~1.5 ms of round trip (submit,
#: pickling, wake-ups) on top of a small file's ~0.8 ms of decoding and writing
THUMB_BATCH = 32
#: ... and source bytes per task, at most (a larger file is a task of its own)
THUMB_BATCH_BYTES = 1 << 20
#: The thumbnail workers' priority below the daemon's: during an ingest burst they took ~15 % of
#: the CPU time from the decode workers (a report shows placeholders until its thumbnails are made)
THUMB_NICE = 10

_pool: DecodePool | None = None
_pool_lock = threading.Lock()
_background: ThreadPoolExecutor | None = None  # waits for the worker processes (no decoding here)
_pending: set[str] = set()  # digests (hex) whose thumbnail is being made in the background


def _workers() -> DecodePool:
    """The thumbnail decoders of this process (started on first use; they exit with it)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = DecodePool("thumbnail", THUMB_WORKERS, task_timeout_s=THUMB_TIMEOUT_S, nice=THUMB_NICE)
        return _pool


def start_workers() -> None:
    """Start the thumbnail decoders now (the daemon does at start-up: its first report is then as
    quick as later ones)."""
    _workers().start()


def stop_workers() -> None:
    """Stop the thumbnail decoders (the daemon at shutdown); the next thumbnail starts them again."""
    global _pool, _background
    with _pool_lock:
        pool, _pool = _pool, None
        background, _background = _background, None
        _pending.clear()
    if background is not None:
        background.shutdown(wait=False, cancel_futures=True)
    if pool is not None:
        pool.shutdown()


def thumb_name(digest: bytes | str) -> str:
    """File name of the thumbnail of ``digest`` (bytes or hex)."""
    return (digest.hex() if isinstance(digest, bytes) else digest) + THUMB_EXT


_ORIENTATION = 0x0112  # the EXIF orientation tag: 5-8 turn the picture by a quarter
_SWAPS = frozenset({5, 6, 7, 8})


def fit_size(width: int, height: int, size: int) -> tuple[int, int]:
    """``width`` x ``height`` scaled to fit a ``size`` px square, aspect kept (unchanged when it
    fits already): the shorter side is rounded down or up, whichever keeps the aspect ratio
    closer (ties down), as Pillow's ``Image.thumbnail`` sizes it, at least 1 px."""
    if width <= size and height <= size:
        return width, height
    aspect = width / height
    if aspect <= 1:  # portrait (or square): the height is the box's
        exact = size * aspect
        short = min(math.floor(exact), math.ceil(exact), key=lambda n: abs(aspect - n / size))
        return max(1, short), size
    exact = size / aspect
    short = min(math.floor(exact), math.ceil(exact), key=lambda n: abs(aspect - size / n) if n else math.inf)
    return size, max(1, short)


def render_thumbnail(src: str, size: int = THUMB_SIZE, max_pixels: int = DEFAULT_MAX_PIXELS) -> bytes | None:
    """A ``size``-px JPEG of ``src`` (its bytes), or None if ``src`` cannot be decoded.

    Runs in a worker process (see :func:`ensure_thumbnail`): it decodes the file, with the same
    format allow-list and pixel limit as the encoders. The caller writes the bytes (:func:`_store`).
    """
    from PIL import Image, ImageOps

    from dedupd.errors import ImageDecodeError
    from dedupd.imaging import limit_pixels, open_untrusted

    limit_pixels(max_pixels)
    try:
        with open_untrusted(src, max_pixels) as img:
            w, h = img.size
            # JPEG: decoded at the smallest DCT scale that still covers the thumbnail (a 640 px
            # photo at 1/4: 1.4 ms rather than 3.3 ms a thumbnail; a square box of (2 * size)
            # decoded most 640 px photos at full scale)
            img.draft("RGB", fit_size(w, h, size))
            swapped = img.getexif().get(_ORIENTATION) in _SWAPS
            img = ImageOps.exif_transpose(img)
            target = fit_size(h, w, size) if swapped else fit_size(w, h, size)
            if img.size != target:
                img = img.resize(target, Image.Resampling.LANCZOS, reducing_gap=2.0)
            if img.mode not in ("RGB", "L"):
                img = img.convert("RGBA").convert("RGB")  # drop alpha, as the decoders do
            buf = io.BytesIO()
            img.save(buf, "JPEG", quality=78, optimize=True)
        return buf.getvalue()
    except (ImageDecodeError, OSError, ValueError, SyntaxError, EOFError, RuntimeError, MemoryError,
            Image.DecompressionBombError, Image.DecompressionBombWarning):
        return None


def render_thumbnails(srcs: list[str], size: int, max_pixels: int) -> list[bytes | None]:
    """:func:`render_thumbnail` of each of ``srcs`` in turn (one worker task for many files)."""
    return [render_thumbnail(src, size, max_pixels) for src in srcs]


#: One thumbnail write at a time, by this process. The workers used to write their own: two
#: processes creating and renaming files in one ext4 folder at once spent 0.3-0.5 ms a file (kernel
#: CPU, measured by hand) against ~0.12 ms for one writer. With :data:`THUMB_THREADS`,
#: ``bench_encode.py --only c --before`` (3 alternating rounds, load ~2): 20,000 tiny JPEGs 8.18 ->
#: 8.02 s, 1,000 mixed photos 3.98 -> 3.47 s; ``bench_thumbnails.py`` (one caller, nothing else
#: writing): no change beyond noise
_write_lock = threading.Lock()
#: A thumbnail that cannot be written is logged at most this often (with the count since)
WRITE_WARN_EVERY_S = 60.0
_failed_writes = 0
_warned_at = -math.inf


def _store(dest: str, data: bytes, mode: int) -> bool:
    """Write a thumbnail made by a worker, atomically (not synced: a cache, remade if lost in a
    crash); False when it cannot be written (a full disk): the report shows the placeholder, and
    the next report tries again (no failure marker: the file itself is fine). Logged at most once
    a minute, with how many failed since (a full disk fails every thumbnail of a report)."""
    global _failed_writes, _warned_at
    try:
        with _write_lock:
            write_atomic(dest, data, mode, durable=False)
        return True
    except OSError as exc:
        with _write_lock:
            _failed_writes += 1
            now = time.monotonic()
            if now - _warned_at < WRITE_WARN_EVERY_S:
                return False
            failed, _failed_writes, _warned_at = _failed_writes, 0, now
        logger.warning("could not write %d thumbnail(s), the last %s (%s); the report shows placeholders "
                       "for them (the next report tries again)", failed, dest, exc.strerror or exc,
                       extra={"path": dest})
        return False


def _cached(cache_dir: str, digest: bytes | str, mode: int) -> tuple[bool, str | None]:
    """(known, name): the cached thumbnail of ``digest`` or its failure marker, without decoding."""
    name = thumb_name(digest)
    dest = os.path.join(cache_dir, name)
    try:
        st = os.stat(dest)
    except OSError:
        st = None
    if st is not None and stat.S_ISREG(st.st_mode):
        if stat.S_IMODE(st.st_mode) != file_mode(mode):  # made under another report_mode
            os.chmod(dest, file_mode(mode))
        return True, name
    return os.path.exists(dest[: -len(THUMB_EXT)] + ".err"), None


def ensure_thumbnail(src: str, digest: bytes | str, cache_dir: str, size: int = THUMB_SIZE,
                     max_pixels: int = DEFAULT_MAX_PIXELS, mode: int = DEFAULT_REPORT_MODE) -> str | None:
    """Name of the cached thumbnail of ``digest`` (made from ``src`` in a worker process if missing),
    or None when it cannot be decoded (a crash or a hang of the worker counts as that)."""
    name = thumb_name(digest)
    dest = os.path.join(cache_dir, name)
    known, cached = _cached(cache_dir, digest, mode)
    if known:
        return cached
    os.makedirs(cache_dir, exist_ok=True)
    pool = _workers()
    try:
        data = pool.run(render_thumbnail, src, size, max_pixels)
    except DecodeFailed:
        if pool.closed:  # stopped meanwhile (the daemon is stopping): not the file's fault, no marker
            return None
        data = None
    if data is not None:
        return name if _store(dest, data, mode) else None
    _mark_failed(dest)
    return None


def _mark_failed(dest: str) -> None:
    """Leave the ``.err`` marker of the thumbnail ``dest`` (the report then shows a placeholder)."""
    try:
        with open(dest[: -len(THUMB_EXT)] + ".err", "w"):
            pass
    except OSError:
        pass


def _make_batch(todo: list[tuple[str, str]], cache_dir: str, size: int, max_pixels: int,
                mode: int) -> dict[str, str | None]:
    """``{digest hex: thumbnail name or None}`` for ``(digest hex, source)`` pairs, made in one worker
    task. A task that fails as a whole (a worker crash or hang on one hostile file) is made again
    file by file, so that only the file at fault gets its ``.err`` marker."""
    os.makedirs(cache_dir, exist_ok=True)
    pool = _workers()
    try:
        made = pool.run(render_thumbnails, [src for _, src in todo], size, max_pixels)
    except DecodeFailed:
        if pool.closed:  # stopped meanwhile (the daemon is stopping): no markers, made next time
            return {hx: None for hx, _ in todo}
        if len(todo) == 1:
            made = [None]
        else:
            return {hx: ensure_thumbnail(src, hx, cache_dir, size, max_pixels, mode) for hx, src in todo}
    results: dict[str, str | None] = {}
    for (hx, _), data in zip(todo, made, strict=True):
        dest = os.path.join(cache_dir, thumb_name(hx))
        if data is None:
            _mark_failed(dest)
        results[hx] = thumb_name(hx) if data is not None and _store(dest, data, mode) else None
    return results


def _batches(todo: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    """``todo`` cut into worker tasks: at most :data:`THUMB_BATCH` files and :data:`THUMB_BATCH_BYTES`
    of sources each (a camera photo is a task of its own: its decode dwarfs the round trip, and
    the workers stay balanced), and at least one task per worker when there are that many files."""
    most = max(1, min(THUMB_BATCH, math.ceil(len(todo) / THUMB_WORKERS)))
    batches: list[list[tuple[str, str]]] = []
    batch: list[tuple[str, str]] = []
    held = 0
    for item in todo:
        try:
            size = os.stat(item[1]).st_size
        except OSError:
            size = 0  # the worker says why (the file gets its marker)
        if batch and (len(batch) == most or held + size > THUMB_BATCH_BYTES):
            batches.append(batch)
            batch, held = [], 0
        batch.append(item)
        held += size
    if batch:
        batches.append(batch)
    return batches


def _in_background(todo: list[tuple[str, str]], make: Callable[[list[tuple[str, str]]], object],
                   on_made: Callable[[], None]) -> None:
    """Make thumbnails of ``(digest hex, source)`` pairs on background threads (each waits for a
    worker process, a batch of files at a time); ``on_made`` is called once they are all done, and
    after every 256 before that."""
    global _background
    with _pool_lock:
        todo = [(hx, src) for hx, src in todo if hx not in _pending]
        if not todo:
            return
        _pending.update(hx for hx, _ in todo)
        if _background is None:
            _background = ThreadPoolExecutor(THUMB_THREADS, thread_name_prefix="dedupd-thumbs")
        ex = _background

    left = [len(todo)]  # of this call's files (guarded by _pool_lock)

    def one(batch: list[tuple[str, str]]) -> None:
        try:
            make(batch)
        except Exception:  # a future's exception would be lost: say it (the report keeps placeholders)
            logger.exception("making the thumbnails of %d files failed (the first: %s)", len(batch), batch[0][1],
                             extra={"path": batch[0][1]})
        finally:
            with _pool_lock:
                _pending.difference_update(hx for hx, _ in batch)
                before, left[0] = left[0], left[0] - len(batch)
                last = left[0] == 0 or before // 256 != left[0] // 256  # all done, or another 256
            if last:
                on_made()

    keys = {hx for hx, _ in todo}
    try:
        for batch in _batches(todo):
            ex.submit(one, batch)
    except RuntimeError:  # shut down meanwhile (the daemon is stopping)
        with _pool_lock:
            _pending.difference_update(keys)


def ensure_thumbnails(items: Iterable[tuple[str, bytes | str]], cache_dir: str, size: int = THUMB_SIZE,
                      max_pixels: int = DEFAULT_MAX_PIXELS, mode: int = DEFAULT_REPORT_MODE,
                      on_made: Callable[[], None] | None = None) -> dict[str, str | None]:
    """``{path: thumbnail file name or None}`` for ``(path, digest)`` pairs; one decode per digest,
    :data:`THUMB_WORKERS` tasks of up to :data:`THUMB_BATCH` files at once.

    With ``on_made``, nothing waits for a decode: thumbnails not cached yet are None now, are made
    in the background, and ``on_made()`` says when (ask again then).
    """
    by_digest: dict[str, str] = {}
    paths: dict[str, str] = {}
    for path, digest in items:
        hx = digest.hex() if isinstance(digest, bytes) else digest
        paths[path] = hx
        if hx not in by_digest or not os.path.exists(by_digest[hx]):
            by_digest[hx] = path
    results: dict[str, str | None] = {}
    todo = []
    for hx, src in by_digest.items():
        known, name = _cached(cache_dir, hx, mode)
        results[hx] = name
        if not known:
            todo.append((hx, src))

    def make(batch: list[tuple[str, str]]) -> dict[str, str | None]:
        return _make_batch(batch, cache_dir, size, max_pixels, mode)

    if on_made is not None:
        if todo:
            _in_background(todo, make, on_made)
    elif todo:
        batches = _batches(todo)
        if len(batches) == 1:
            results.update(make(batches[0]))
        else:  # these threads wait for the worker processes (which decode) and write what they send
            with ThreadPoolExecutor(THUMB_THREADS) as ex:
                for made in ex.map(make, batches):
                    results.update(made)
    return {p: results[hx] for p, hx in paths.items()}
