"""Content digests and the decode-once encode job run in worker processes.

The job is a module-level function so a ``forkserver`` pool can run it: the daemon's threads are
never forked. Each worker keeps its CNN model (if any) for its lifetime.
"""

from __future__ import annotations

import errno
import hashlib
import os
import select
import stat
import threading
import time
from dataclasses import dataclass

import numpy as np
from PIL import Image

from dedupd import resample
from dedupd.core.algorithms import HASH_METHODS
from dedupd.encoding import hashes_of
from dedupd.errors import DedupdError, ImageDecodeError, ImageTooLargeError
from dedupd.imaging import accelerate_small_images, decode_array, decode_file, limit_pixels, supported_formats

DIGEST_SIZE = 16
_CHUNK = 1 << 20


def file_digest(path: str) -> bytes:
    """BLAKE2b-128 of the file's bytes (raises OSError when it cannot be read, or is not a regular
    file: opened non-blocking and checked, so a FIFO that replaced a file never hangs the caller)."""
    h = hashlib.blake2b(digest_size=DIGEST_SIZE)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:  # on the descriptor itself: no file object per file (~10 us each in the pipeline thread)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
        # reads sized to the file: a 1 MiB read buffer per small file is an mmap + munmap each time
        # (a TLB shootdown across the daemon's threads); a file that grows is still read to its end
        size = max(4096, min(_CHUNK, st.st_size + 1))
        while chunk := os.read(fd, size):
            h.update(chunk)
    finally:
        os.close(fd)
    return h.digest()


def bytes_digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=DIGEST_SIZE).digest()


@dataclass(frozen=True)
class EncodeSpec:
    """What to compute for each file (picklable: sent to the worker processes)."""

    methods: tuple[str, ...]
    fast: bool = False
    exif_transpose: bool = False
    cnn_model: str | None = None
    cnn_weights: str | None = None
    #: images above this many pixels are refused undecoded (the daemon's ``max_pixels``)
    max_pixels: int | None = None


@dataclass(frozen=True)
class EncodeResult:
    """A worker's answer: the encodings, or the reason the file cannot be decoded."""

    ok: bool
    width: int = 0
    height: int = 0
    format: str | None = None
    hashes: dict[str, int] | None = None
    vector: bytes | None = None
    reason: str | None = None
    #: refused for its size alone (above ``max_pixels``), not for bad data
    too_large: bool = False


_extractor = None  # per worker process: (model key, extractor)


def _extractor_for(spec: EncodeSpec):
    global _extractor
    key = (spec.cnn_model, spec.cnn_weights)
    if _extractor is None or _extractor[0] != key:
        from dedupd.cnn_models import daemon_extractor

        if spec.cnn_model is None:
            raise ValueError("this encode spec has no CNN model")

        _extractor = (key, daemon_extractor(spec.cnn_model, spec.cnn_weights))
    return _extractor[1]


def _failure(exc: BaseException) -> EncodeResult:
    if isinstance(exc, ImageTooLargeError):
        return EncodeResult(ok=False, reason=exc.reason, too_large=True)
    if isinstance(exc, ImageDecodeError):
        return EncodeResult(ok=False, reason=exc.reason)
    if isinstance(exc, MemoryError):
        return EncodeResult(ok=False, reason="out of memory while decoding (image too large?)")
    # a codec bug must not stop the daemon: record it for this file
    return EncodeResult(ok=False, reason=f"decoder failed ({type(exc).__name__}: {exc})")


def encode_many(paths: list[str], spec: EncodeSpec) -> list[EncodeResult]:
    """Decode each file once, compute its hashes, and run the CNN (if any) on the batch at once.

    Never raises for a bad file (its result says why); a missing CNN model raises
    :class:`~dedupd.errors.ModelUnavailableError`, which is a configuration problem.
    """
    prepare_process()
    _count_files(len(paths))
    if spec.max_pixels is not None:
        limit_pixels(spec.max_pixels)
    results: list[EncodeResult | None] = []
    images = []
    for path in paths:
        try:
            image = decode_file(path, exif_transpose=spec.exif_transpose, fast=spec.fast,
                                max_pixels=spec.max_pixels, formats=supported_formats())
            hashes = hashes_of(image, spec.methods)
        except DedupdError as exc:
            if not isinstance(exc, ImageDecodeError):
                raise
            results.append(_failure(exc))
            continue
        except Exception as exc:
            results.append(_failure(exc))
            continue
        results.append(EncodeResult(True, image.width, image.height, image.format, hashes))
        images.append((len(results) - 1, image))
    if spec.cnn_model and images:
        vectors = _extractor_for(spec).encode([im for _, im in images], normalize=True)
        for (k, _), vec in zip(images, vectors):
            r = results[k]
            assert r is not None
            results[k] = EncodeResult(True, r.width, r.height, r.format, r.hashes,
                                      np.asarray(vec, dtype=np.float32).tobytes())
    return [r for r in results if r is not None]


def encode_job(path: str, spec: EncodeSpec) -> EncodeResult:
    """:func:`encode_many` for one file."""
    return encode_many([path], spec)[0]


_prepared = False

#: A decode worker hashes its first files below 1 Mpx with Pillow's resize (the same values) and
#: loads the compiled one (numba and its cached machine code, ~0.3 s) once it has been given this
#: many: a scan of a few dozen files no longer waits for that load before its first decode (6 PNG/WebP
#: photos of 12 MP, ``decode: fast``: 1.34 -> 0.98 s, ``bench/bench_encode.py --only a --before``); a long
#: run pays ~50 ms a worker for it. Larger images load the compiled resize on their first resize, as
#: the library does.
ACCELERATE_AFTER_FILES = 32
_files_given = 0


def prepare_process() -> None:
    """Load what every decode needs, once per process: the hash stack (Pillow and its format
    plugins, scipy, PyWavelets). Run by the forkserver at its start (:mod:`dedupd.daemon.preload`),
    so each worker forks with it done; the compiled resize comes later (:data:`ACCELERATE_AFTER_FILES`),
    unless numba's cache does not hold it yet: then it is built here."""
    global _prepared
    if not _prepared:
        hashes_of(decode_array(np.zeros((8, 8, 3), np.uint8)), HASH_METHODS)
        # the allowed formats and every Pillow plugin (what a file's first open imports: ~45 ms
        # a process, paid once in the forkserver rather than by each decode and thumbnail worker)
        supported_formats()
        Image.init()
        if not resample.cache_warm():  # a build (~10 s, more on a slow CPU) here, not in a time-limited decode
            resample.build_all()
            accelerate_small_images()
        _prepared = True


def _count_files(n: int) -> None:
    """Note ``n`` more files given to this worker; load the compiled resize for all sizes
    (:func:`dedupd.imaging.accelerate_small_images`) when they reach :data:`ACCELERATE_AFTER_FILES`."""
    global _files_given
    before, _files_given = _files_given, _files_given + n
    if before < ACCELERATE_AFTER_FILES <= _files_given:
        accelerate_small_images()


def warm_up(spec: EncodeSpec | None = None) -> int:
    """Start a worker early: import the decode and hash stack (Pillow, scipy, PyWavelets: seconds
    on a busy machine, which must not count against a decode's time limit) by hashing a tiny
    in-memory image, and load the CNN model, if any; returns the worker's pid."""
    if spec is not None:
        prepare_process()
        hashes_of(decode_array(np.zeros((8, 8, 3), np.uint8)), spec.methods)
        if spec.cnn_model:
            _extractor_for(spec)
    return os.getpid()


def exit_with_parent(daemon_pid: int) -> None:
    """Worker initializer: exit as soon as the daemon process is gone.

    A pool worker blocks on its task queue forever, and after a ``kill -9`` of the daemon nothing
    else would end it (nor the forkserver, which waits for its children).
    """

    def watch() -> None:
        try:
            fd = os.pidfd_open(daemon_pid)
        except (AttributeError, OSError):
            fd = None
        if fd is not None:
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            while not poller.poll():
                pass
        else:
            while os.getppid() != 1:
                try:
                    os.kill(daemon_pid, 0)
                except ProcessLookupError:
                    break
                except PermissionError:
                    pass
                time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="dedupd-exit-with-parent", daemon=True).start()
